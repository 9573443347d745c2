"""The blind tab's screen of the bank and the drop of a failed configuration, through the handlers.

The bank is made by the demo model (so the clips have real bank keys and sidecars) and its audio
is then replaced by flite speech of each clip's own text; one configuration's clips are made
silent (the speech at -100 dB). So the truth is known without the screen: that configuration,
and only it, must be flagged and offered for dropping, and after the drop no trial may name it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from abapp import blind_handlers, blind_screen_handlers
from abapp.bank_screen import BankScreener
from abapp.blind_runner import BlindTestRunner
from abapp.results_screen import screen_beside_mos
from abapp.screen_view import PlaygroundScreen
from abapp.ui import make_context
from eval.screen.options import ScreenOptions
from eval.screen.summary import read_rows
from eval.serving.clipbank import ClipBank
from eval.serving.ratings import RatingsStore
from eval.serving.trials import plan_from_dict
from tests.conftest import judgement
from tests.screen_audio import flite, needs_speech_tools, trim_silence
from tts_core import load_pipeline
from tts_core.model.factory import demo_model_dir

pytestmark = needs_speech_tools

PASSWORD = "screen-admin"
BASE, GOOD, BROKEN = "float32-n10", "float32-n5", "float32-n3"
PLAN = {
    "name": "screen then drop",
    "texts": ["en_07", "en_09"],
    "prompts": ["en_flite_slt"],
    "configs": [BASE, GOOD, BROKEN],
    "baseline": BASE,
    "trials_per_listener": 2,
}
SILENT_GAIN = 1e-5  # -100 dB: far below the silence floor of ScreenOptions (-45 dBFS)


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline(demo_model_dir(), device="cpu")


def _speech_bank(ctx) -> None:
    """Replace every clip of the active plan by flite speech of its text; BROKEN's made silent."""
    _, clips, missing = ctx.blind.condition_clips()
    assert missing == 0 and len(clips) == 6
    speech = {}
    for (text_id, _, label), clip in clips.items():
        if text_id not in speech:
            audio, rate = flite(ctx.texts[text_id].text, "slt")
            speech[text_id] = (trim_silence(audio), rate)
        audio, rate = speech[text_id]
        meta = {k: v for k, v in clip.meta.items() if k != "speech_tokens"}  # the demo LLM's tokens are random
        ctx.blind.bank.put_audio(clip.key, audio * (SILENT_GAIN if label == BROKEN else 1.0), rate, meta)


def _context(folder: Path, pipeline):
    """An app context over ``folder`` whose screen runs the flags only."""
    made = make_context(pipeline, RatingsStore(folder / "ratings.csv"), folder, admin_password=PASSWORD)
    screen = PlaygroundScreen(pipeline.info.model_dir, True, options=ScreenOptions(measures=("flags",)))
    return replace(made, screen=screen, bank_screen=BankScreener(screen, folder))


@pytest.fixture(scope="module")
def speech_clips(tmp_path_factory, pipeline) -> Path:
    """A clip bank of the plan (demo model), then speech, BROKEN silent (made once for the module)."""
    folder = tmp_path_factory.mktemp("bank")
    made = _context(folder, pipeline)
    made.blind.set_plan(plan_from_dict(PLAN, made.texts))
    made.blind.generate(None)
    _speech_bank(made)
    return folder / "clips"


@pytest.fixture()
def ctx(tmp_path, pipeline, speech_clips):
    """A fresh app (no plan file, no ratings, no screen) over a copy of the speech bank, PLAN active."""
    shutil.copytree(speech_clips, tmp_path / "clips")
    made = _context(tmp_path, pipeline)
    made.blind.set_plan(plan_from_dict(PLAN, made.texts))
    assert made.blind.readiness() == (6, 6)
    return made


def test_the_silent_configuration_is_flagged_offered_and_dropped(ctx, tmp_path) -> None:
    ticks = []
    view = blind_screen_handlers.screen_bank(ctx, PASSWORD, None, lambda d, t, m: ticks.append((d, t)))
    assert ticks[-1] == (6, 6) and len(ticks) == 6  # the progress bar saw every clip
    assert view.drop_choices == (BROKEN,)
    assert f"| `{BROKEN}` | 2 |" in view.summary and "⚠️ **2** (silent 2)" in view.summary
    assert f"| `{BASE}` | 2 |" in view.summary and f"| `{GOOD}` | 2 |" in view.summary
    assert f"- `{BROKEN}` en_07 / en_flite_slt: silent" in view.summary and view.figure is not None
    saved = read_rows(tmp_path / "screen" / "screen-then-drop" / "clips.csv")
    assert {r.config for r in saved if r.flags} == {BROKEN} and len(saved) == 6

    view = blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BROKEN)
    plan = ctx.blind.plan
    assert [c.label for c in plan.conditions] == [BASE, GOOD]
    assert plan.dropped[0].label == BROKEN and "2 of 2 clips flagged (silent 2)" in plan.dropped[0].reason
    assert f"Dropped before the test:** `{BROKEN}`" in view.plan_status  # the plan status says what and why
    assert f"`{BROKEN}`" in view.summary and "automatic screen: 2 of 2" in view.summary
    assert view.drop_choices == () and "nothing to drop" in view.summary
    for k in range(12):
        session = blind_handlers.start(ctx, f"listener-{k}").session
        assert {(t.config_a.label, t.config_b.label) for t in session.trials} == {(BASE, GOOD)}

    # A restart reads the saved plan: the same plan, the drop recorded, the same trials.
    resumed = BlindTestRunner(ctx.pipeline, ClipBank(tmp_path / "clips"), ctx.texts, ctx.prompts, tmp_path)
    assert resumed.plan == plan and resumed.trials_for("listener-0") == ctx.blind.trials_for("listener-0")
    saved_plan = json.loads((tmp_path / "active_plan.json").read_text())
    assert saved_plan["dropped"][0]["label"] == BROKEN and BROKEN not in saved_plan["configs"]


def test_drops_that_are_refused_say_why(ctx) -> None:
    with pytest.raises(ValueError, match="wrong admin password"):
        blind_screen_handlers.screen_bank(ctx, "guess", None, None)
    with pytest.raises(ValueError, match="screen the bank first"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BROKEN)
    blind_screen_handlers.screen_bank(ctx, PASSWORD, None, None)
    with pytest.raises(ValueError, match="is the baseline"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BASE)
    with pytest.raises(ValueError, match="no flagged clip"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, GOOD)
    with pytest.raises(ValueError, match="choose the configuration"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, None)
    # Once a listener has rated a trial of the plan, its design is fixed.
    trial = blind_handlers.start(ctx, "early").session.trial
    ctx.store.append(judgement(trial.trial_id, "early"))
    with pytest.raises(ValueError, match="already rated 1 trial"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BROKEN)
    assert BROKEN in [c.label for c in ctx.blind.plan.conditions]  # nothing changed


def test_a_drop_that_leaves_too_few_trials_is_refused(ctx) -> None:
    ctx.blind.set_plan(plan_from_dict(PLAN | {"trials_per_listener": 3}, ctx.texts))
    blind_screen_handlers.screen_bank(ctx, PASSWORD, None, None)
    with pytest.raises(ValueError, match="cannot drop `float32-n3`: the plan asks 3 trials per listener"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BROKEN)


def test_only_two_configurations_left_cannot_lose_one(ctx) -> None:
    ctx.blind.set_plan(plan_from_dict(PLAN | {"configs": [BASE, BROKEN], "trials_per_listener": 1}, ctx.texts))
    view = blind_screen_handlers.screen_bank(ctx, PASSWORD, None, None)
    assert view.drop_choices == (BROKEN,)  # flagged, so offered; the rule is the drop's to state
    with pytest.raises(ValueError, match="at least 2 configurations"):
        blind_screen_handlers.drop_configuration(ctx, PASSWORD, None, BROKEN)


def test_the_saved_screen_comes_back_after_a_reload(ctx) -> None:
    assert "Not screened yet" in blind_screen_handlers.screen_status(ctx, PASSWORD, None).summary
    blind_screen_handlers.screen_bank(ctx, PASSWORD, None, None)
    again = blind_screen_handlers.screen_status(ctx, PASSWORD, None)  # a new page: read from the files
    assert again.drop_choices == (BROKEN,) and "⚠️ **2** (silent 2)" in again.summary
    assert blind_screen_handlers.screen_on_load(ctx, None).summary == ""  # a listener's page: nothing


def blind_rows(ctx) -> list[dict[str, str]]:
    """The rows the Results tab counts with "Blind trials only"."""
    return [r for r in ctx.store.rows() if r["mode"] == "blind"]


def test_results_show_the_screen_beside_the_human_scores(ctx) -> None:
    assert "have not been screened yet" in screen_beside_mos(ctx, blind_rows(ctx))
    blind_screen_handlers.screen_bank(ctx, PASSWORD, None, None)
    _, clips, _ = ctx.blind.condition_clips()
    # Two judgements: the baseline vs each other configuration, on en_07.
    for n, label in enumerate((GOOD, BROKEN)):
        a, b = clips[("en_07", "en_flite_slt", BASE)], clips[("en_07", "en_flite_slt", label)]
        ctx.store.append(
            judgement(f"t{n}") | {
                "a_clip_id": a.key[:16], "a_config": BASE, "a_dtype": "float32", "a_flow_steps": 10,
                "b_clip_id": b.key[:16], "b_config": label, "b_dtype": "float32", "b_flow_steps": int(label[-1]),
                "score_a": 4, "score_b": 1 if label == BROKEN else 3,
            }
        )  # fmt: skip
    text = screen_beside_mos(ctx, blind_rows(ctx))
    assert f"| `{BASE}` | 1 / 2 | 4.00 |" in text  # its en_07 clip got two 4s
    assert f"| `{GOOD}` | 1 / 2 | 3.00 |" in text and f"| `{BROKEN}` | 1 / 2 | 1.00 |" in text
    assert "across configurations" in text and "4 scores matched to screened clips, 0 not" in text


@pytest.mark.slow
def test_screen_and_drop_through_the_app(tmp_path, speech_clips) -> None:
    """The wiring: the endpoints the panel's buttons call, on a served app with every measure on."""
    from gradio_client.exceptions import AppError

    from tests.app_helpers import client, listen_both, running_app

    shutil.copytree(speech_clips, tmp_path / "clips")
    (tmp_path / "active_plan.json").write_text(plan_from_dict(PLAN).to_json())  # the app resumes it
    with running_app(tmp_path, PASSWORD) as app:
        experimenter, listener = client(app), client(app, "after-the-drop")
        with pytest.raises(AppError, match="wrong admin password"):
            experimenter.predict("guess", api_name="/blind_screen")
        summary, _plot, choice = experimenter.predict(PASSWORD, api_name="/blind_screen")
        assert "⚠️ **2** (silent 2" in summary and choice["value"] == BROKEN and choice["choices"] == [[BROKEN, BROKEN]]
        with pytest.raises(AppError, match="not in the list of choices"):  # only flagged ones are offered
            experimenter.predict(PASSWORD, BASE, api_name="/blind_drop")
        summary, _plot, choice, status = experimenter.predict(PASSWORD, BROKEN, api_name="/blind_drop")
        assert f"Dropped before the test:** `{BROKEN}` (automatic screen: 2 of 2" in status
        assert f"`{BROKEN}`" not in summary.split("Dropped before the test")[1].split("\n", 1)[1]  # gone from the table
        assert "Trial 1 of 2" in listener.predict(api_name="/blind_start")[2]
        listen_both(app, listener)
        listener.predict(5, 3, "first", api_name="/blind_rate")
        beside = experimenter.predict(PASSWORD, BASE, "blind", api_name="/results")[-1]
        assert f"| `{BASE}` | 1 / 2 |" in beside and f"| `{GOOD}` | 1 / 2 |" in beside and BROKEN not in beside
        assert "2 scores matched to screened clips, 0 not" in beside
