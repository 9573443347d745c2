"""The app's endpoints through gradio_client, against an in-process server with the demo model.

Each ``Client`` is one browser session (its own ``gr.State``); a new Client with the same
listener id is what a page reload looks like to the server (tests/app_helpers.py).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from eval.serving import loudness  # noqa: E402
from eval.serving.assignment import assign_trials  # noqa: E402
from eval.serving.trials import load_prompts, load_texts, plan_from_dict  # noqa: E402
from tests.app_helpers import client, listen, listen_both, rows, running_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "assets" / "prompts" / "en_flite_slt.wav"
PROMPT_TEXT = "She sells fresh bread and warm coffee at the little shop on the corner."
PASSWORD = "s3cret-admin"
CONFIG_LABEL = re.compile(r"(float32|float16|bfloat16)-n\d+")
PLAN_ARGS = (
    "small",
    3,
    0,
    ["en_01", "en_03"],
    ["en_flite_slt"],
    ["float32-n10", "float32-n5"],
    "float32-n2",
    "float32-n10",
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("appdata"), PASSWORD) as served:
        yield served


def generate(
    c: Client,
    text: str = "Hello, world.",
    prompt=PROMPT,
    steps=(10, 5),
    dtypes=("float32", "float32"),
    streams=(False, False),
):
    return c.predict(
        text,
        handle_file(str(prompt)),
        PROMPT_TEXT,
        steps[0],
        dtypes[0],
        0,
        steps[1],
        dtypes[1],
        0,
        "auto",
        streams[0],
        streams[1],
        api_name="/generate",
    )


def test_playground_streamed_side_shows_first_chunk_and_edges(app) -> None:
    c = client(app, "pg-stream")
    text = "The quick brown fox jumps over the lazy dog, and the dog sleeps on in the afternoon sun."
    _a, _b, info_a, info_b, _plot, distances, *_rest = generate(c, text=text, streams=(False, True))
    assert "float32-n10" in info_a and "first chunk" not in info_a
    assert "float32-n5-stream" in info_b and "first chunk" in info_b
    assert "chunk edges" in distances


def test_playground_generate_play_rate(app) -> None:
    import soundfile as sf

    c = client(app, "pg-listener")
    out = generate(c)
    audio_a, audio_b, info_a, info_b, _plot, distances, *_radios, status = out
    for path in (audio_a, audio_b):
        audio, rate = sf.read(path)
        assert rate == 24_000 and len(audio) > 0
        # Loudness-matched for the player (on by default); measured independently of the app's record.
        assert loudness.integrated_loudness(audio, rate) == pytest.approx(loudness.TARGET_LUFS, abs=0.2)
    assert "LUFS" in info_a and "→ -23.0 LUFS" in info_b
    assert "RTF" in info_a and "ran: float32" in info_a and "float32-n10" in info_a and "float32-n5" in info_b
    assert "LLM" in info_b and "flow" in info_b and "vocoder" in info_b
    assert "mel" in distances
    trial_id = re.search(r"`(pg-[0-9a-f]+)`", status).group(1)

    with pytest.raises(AppError, match="listen to both clips"):
        c.predict(4, 3, "first", api_name="/rate")
    c.predict(api_name="/played_a")
    c.predict(api_name="/ended_a")  # "ended" at once: skipped to the end, not heard
    with pytest.raises(AppError, match="clip 1 and 2"):
        c.predict(4, 3, "first", api_name="/rate")
    listen(app, c, "a")
    listen(app, c, "a")  # heard twice
    with pytest.raises(AppError, match="clip 2"):
        c.predict(4, 3, "first", api_name="/rate")
    listen(app, c, "b")
    assert "Saved" in c.predict(4, 3, "first", api_name="/rate")
    with pytest.raises(AppError, match="already rated"):
        c.predict(5, 5, "second", api_name="/rate")

    (row,) = [r for r in rows(app) if r["trial_id"] == trial_id]
    assert row["listener_id"] == "pg-listener" and row["mode"] == "playground"
    assert row["text_id"] == "en_01" and row["text"] == "Hello, world." and row["prompt_id"] == "en_flite_slt"
    assert (row["a_config"], row["b_config"]) == ("float32-n10", "float32-n5")
    assert (row["a_flow_steps"], row["a_dtype"], row["a_seed"], row["b_flow_steps"]) == (
        "10",
        "float32",
        "0",
        "5",
    )
    assert (row["score_a"], row["score_b"], row["preference"], row["shown_first"]) == ("4", "3", "A", "A")
    assert row["a_clip_id"] and row["a_clip_id"] != row["b_clip_id"]
    assert row["model_id"].startswith("demo") and row["app_version"]
    assert (row["a_plays"], row["b_plays"], row["trial_kind"]) == ("2", "1", "test")


def test_playground_screen_follows_the_pair(app) -> None:
    c = client(app, "screen-listener")
    generate(c)
    screen_a, screen_b = c.predict(api_name="/screen")  # the browser chains it after /generate
    for text in (screen_a, screen_b):
        assert "Predicted MOS (DNSMOS): OVRL" in text and "Similarity to the prompt" in text
        assert "WER" in text and "measures nothing" in text  # the demo model's CAM++ says so


def test_rating_needs_listener_id(app) -> None:
    c = client(app)  # no listener id set in this session
    generate(c)
    listen_both(app, c, "ab")
    with pytest.raises(AppError, match="listener id"):
        c.predict(4, 3, "first", api_name="/rate")


def test_bad_input_gives_readable_errors_and_app_stays_usable(app, tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    silent, short, junk = tmp_path / "silent.wav", tmp_path / "short.wav", tmp_path / "junk.wav"
    sf.write(silent, np.zeros(3 * 24_000, dtype=np.float32), 24_000)
    sf.write(short, (0.3 * np.sin(np.arange(4_800) / 5.0)).astype(np.float32), 24_000)
    junk.write_text("this is not audio")
    c = client(app, "hostile")
    cases = [
        ({"text": ""}, "empty"),
        ({"text": "x" * 10_000}, "10000 characters"),
        ({"prompt": silent}, "silent"),
        ({"prompt": short}, "0.20 s"),
        ({"prompt": junk}, "as audio"),
        ({"steps": (0, 5)}, "minimum value 1|flow_steps"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError) as err:
            generate(c, **kwargs)
        assert re.search(message, str(err.value)), (kwargs.keys(), str(err.value))
        assert "Traceback" not in str(err.value)
    assert "New pair" in generate(c)[-1]  # still usable


def test_blind_plan_generate_rate_resume(app) -> None:
    experimenter = client(app)
    with pytest.raises(AppError, match="admin password"):
        experimenter.predict("wrong", *PLAN_ARGS, api_name="/blind_set_plan")
    summary = experimenter.predict(PASSWORD, *PLAN_ARGS, api_name="/blind_set_plan")
    assert "0 / 6 generated" in summary

    listener = client(app, "dora")
    with pytest.raises(AppError, match="not ready"):
        listener.predict(api_name="/blind_start")
    assert "6 / 6 generated" in experimenter.predict(PASSWORD, api_name="/blind_generate")

    out = listener.predict(api_name="/blind_start")
    assert "Trial 1 of 3" in out[2]
    # Nothing sent to the browser before the end of the test names a configuration.
    assert not any(CONFIG_LABEL.search(str(v)) for v in out)
    assert all(Path(v).name == "audio.wav" for v in out[:2])
    with pytest.raises(AppError, match="listen to both"):
        listener.predict(5, 4, "first", api_name="/blind_rate")
    listener.predict(api_name="/blind_played_1")
    app["clock"].advance(0.5)
    listener.predict(api_name="/blind_paused_1")  # half a second, then paused: not heard
    listen(app, listener, "2")
    with pytest.raises(AppError, match="clip 1"):
        listener.predict(5, 4, "first", api_name="/blind_rate")
    listen(app, listener, "1")
    status, reveal = listener.predict(5, 2, "first", api_name="/blind_rate")
    assert "Saved" in status and not CONFIG_LABEL.search(reveal + status)  # no reveal after a vote
    with pytest.raises(AppError, match="already rated"):
        listener.predict(5, 2, "first", api_name="/blind_rate")

    reloaded = client(app, "dora")  # a page reload: new session, same listener id
    out = reloaded.predict(api_name="/blind_start")
    assert "Trial 2 of 3" in out[2]
    listen_both(app, reloaded)
    reloaded.predict(3, 4, "none", api_name="/blind_rate")

    plan = plan_from_dict(
        dict(zip(("name", "trials_per_listener", "seed", "texts", "prompts"), PLAN_ARGS[:5]))
        | {"configs": [{"dtype": "float32", "flow_steps": n} for n in (10, 5, 2)], "baseline": "float32-n10"}
    )
    expected = assign_trials(plan, "dora", load_texts(), load_prompts())
    mine = [r for r in rows(app) if r["listener_id"] == "dora"]
    assert [r["trial_id"] for r in mine] == [t.trial_id for t in expected[:2]]
    first = mine[0]
    # Clip 1 was rated 5 and preferred: in configuration terms that is the side shown first.
    assert first["preference"] == first["shown_first"]
    assert first[f"score_{first['shown_first'].lower()}"] == "5"
    assert {r["mode"] for r in mine} == {"blind"} and all(r["a_config"] == "float32-n10" for r in mine)
    assert all((r["a_plays"], r["b_plays"], r["trial_kind"]) == ("1", "1", "test") for r in mine)


def test_concurrent_listeners(app) -> None:
    experimenter = client(app)
    experimenter.predict(PASSWORD, *PLAN_ARGS, api_name="/blind_set_plan")
    experimenter.predict(PASSWORD, api_name="/blind_generate")  # already in the bank: nothing to do
    errors = []

    def listen(name: str) -> None:
        try:
            c = client(app, name)
            for _ in range(3):
                c.predict(api_name="/blind_next" if _ else "/blind_start")
                listen_both(app, c)
                c.predict(4, 4, "none", api_name="/blind_rate")
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=listen, args=(f"crowd{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    crowd = [r for r in rows(app) if r["listener_id"].startswith("crowd")]
    assert len(crowd) == 12 and len({r["trial_id"] for r in crowd}) == 12


def test_results_tab(app) -> None:
    import openpyxl

    c = client(app)
    with pytest.raises(AppError, match="admin password"):
        c.predict("nope", "float32-n10", "all", api_name="/results")
    table, method, prefs, _plot, files, _dropdown, screen = c.predict(
        PASSWORD, "float32-n10", "all", api_name="/results"
    )
    assert screen.startswith("Automatic screen:")  # none made yet: it says so (and how to make one)
    logged = rows(app)
    by_config: dict[str, list[int]] = {}
    for r in logged:
        for side in "ab":
            by_config.setdefault(r[f"{side}_config"], []).append(int(r[f"score_{side}"]))
    shown = {row[0]: row for row in table["data"]}
    for config, scores in by_config.items():
        assert shown[config][1] == len(scores)
        assert float(shown[config][4]) == pytest.approx(sum(scores) / len(scores), abs=0.005)
    assert shown["float32-n10"][9] == "baseline"
    assert "cluster-t" in method and "0.95" in method
    names = sorted(Path(f).name for f in files)
    assert (
        any(n.startswith("ratings-") and n.endswith(".csv") for n in names) and "rating-sheet.xlsx" in names
    )
    raw = next(f for f in files if Path(f).name.startswith("ratings-"))
    assert Path(raw).read_bytes() == app["csv"].read_bytes()
    book = openpyxl.load_workbook(next(f for f in files if f.endswith(".xlsx")))
    assert {"summary", "ratings"} <= set(book.sheetnames)


def test_load_plan_file(app, tmp_path: Path) -> None:
    c = client(app)
    with pytest.raises(AppError, match="admin password"):
        c.predict(
            "", handle_file(str(ROOT / "assets" / "plans" / "example.yaml")), api_name="/blind_load_plan"
        )
    summary = c.predict(
        PASSWORD, handle_file(str(ROOT / "assets" / "plans" / "example.yaml")), api_name="/blind_load_plan"
    )
    assert "flow steps only (English)" in summary and "16 trials per listener" in summary
    bad = tmp_path / "plan.json"
    bad.write_text('{"name": "x", "configs": []}')
    with pytest.raises(AppError, match="trials_per_listener|configurations"):
        c.predict(PASSWORD, handle_file(str(bad)), api_name="/blind_load_plan")
