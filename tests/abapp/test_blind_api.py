"""The blind test through its API as a curious listener, an experimenter and a reviewer would use it.

* a scripted listener tries to learn which clip is which configuration, across trials and listener
  ids, from everything it receives (bytes, URLs, names, sizes, durations, the end-of-test reveal);
* a plan with a hidden low anchor, hidden references and clips of another system (espeak-ng) runs
  end to end into the report, which can exclude the listener the controls flag;
* without an admin password the experimenter controls are open to this machine only.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from scipy import stats as sps

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from eval.serving.assignment import assign_trials  # noqa: E402
from eval.serving.trials import load_plan, load_prompts, load_texts  # noqa: E402
from eval.statistics import report  # noqa: E402
from tests.app_helpers import client, listen_both, rows, running_app  # noqa: E402
from tests.eval.serving.test_blind_controls import external_folder  # noqa: E402

PASSWORD = "api-admin"
CONFIGS = ["float32-n10", "float32-n5"]
PLAN_FORM = ("api plan", 3, 0, ["en_01", "en_03"], ["en_flite_slt"], CONFIGS, "float32-n2", "float32-n10")
CONFIG_LABEL = re.compile(r"(float32|float16|bfloat16)-n\d+")
LABELS = ("float32-n10", "float32-n5", "float32-n2", "float32-n10-lp3500", "espeak-ng")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("blind-api"), PASSWORD) as served:
        experimenter = client(served)
        experimenter.predict(PASSWORD, *PLAN_FORM, api_name="/blind_set_plan")
        experimenter.predict(PASSWORD, api_name="/blind_generate")
        served["experimenter"] = experimenter
        yield served


def set_plan(app, **fields) -> str:
    """Set the plan of PLAN_FORM plus the form's later fields (anchor, rates, reveal, folder)."""
    extra = (fields.get("anchor", ""), fields.get("anchor_rate", 0.1), fields.get("reference_rate", 0.0),
             fields.get("reveal_at_end", False), fields.get("external", ""))  # fmt: skip
    summary = app["experimenter"].predict(PASSWORD, *PLAN_FORM, *extra, api_name="/blind_set_plan")
    return app["experimenter"].predict(PASSWORD, api_name="/blind_generate") if "0 /" not in summary else summary


def fetch(file: dict) -> bytes:
    with urllib.request.urlopen(file["url"]) as response:
        return response.read()


def test_a_listener_learns_nothing_about_the_mapping(app, tmp_path: Path) -> None:
    set_plan(app, reveal_at_end=True)
    servings, responses, finals = [], [], []
    for k in range(4):
        listener = client(app, f"curious{k}", download_files=False)
        out = listener.predict(api_name="/blind_start")
        for _ in range(3):
            clips = out[:2]
            responses.append([str(v) for v in out[2:]])
            trial = []
            for file in clips:
                data = fetch(file)
                path = tmp_path / f"{len(servings)}-{len(trial)}.wav"
                path.write_bytes(data)
                audio, rate = sf.read(path, dtype="int16")
                trial.append(
                    {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pcm": hashlib.sha256(audio.tobytes()).hexdigest(),
                        "url": file["url"],
                        "name": file["orig_name"],
                        "size": len(data),
                        "frames": sf.info(path).frames,
                    }
                )
            servings.append(trial)
            listen_both(app, listener)
            status, reveal = listener.predict(4, 4, "none", api_name="/blind_rate")
            responses.append([status, reveal])
            out = listener.predict(api_name="/blind_next")
        assert "rated all 3 trials" in out[2]
        finals.append(out[6])  # the reveal at the end of this listener's test
    every = [clip for trial in servings for clip in trial]
    for key in ("sha256", "pcm", "url"):
        assert len({c[key] for c in every}) == len(every), key  # nothing ever served twice
    for first, second in servings:
        for key in ("name", "size", "frames"):  # the two clips of a trial look alike
            assert first[key] == second[key], key
    assert not any(CONFIG_LABEL.search(text) for response in responses for text in response)  # no reveal before the end
    for reveal in finals:  # the end reveal: the listener's mean per configuration, no clip, no trial
        assert "Your scores by configuration" in reveal
        assert sum(line.startswith("| `") for line in reveal.splitlines()) == 3
        assert not any(c["sha256"][:8] in reveal or c["url"] in reveal for c in every)

    # What an attacker can do with all that: take the clip seen before (by bytes or URL), else the
    # larger or longer file, as the baseline; the truth is in the log (A is the baseline).
    seen: set[str] = set()
    guesses = []
    for first, second in servings:
        known = [c["sha256"] in seen or c["url"] in seen for c in (first, second)]
        if known[0] != known[1]:
            guesses.append("first" if known[0] else "second")
        elif (first["size"], first["frames"]) != (second["size"], second["frames"]):
            guesses.append("first" if (first["size"], first["frames"]) > (second["size"], second["frames"]) else "second")
        else:
            guesses.append("first")
        seen |= {c[k] for c in (first, second) for k in ("sha256", "url")}
    truth = ["first" if r["shown_first"] == "A" else "second" for r in rows(app) if r["listener_id"].startswith("curious")]
    assert len(truth) == len(guesses) == 12
    assert Counter(guesses) == {"first": 12}  # no feature ever told the clips apart
    hits = sum(g == t for g, t in zip(guesses, truth))
    assert sps.binomtest(hits, len(truth), 0.5).pvalue > 0.05  # chance


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox absent")
def test_anchor_reference_and_external_clips_end_to_end(app, tmp_path: Path) -> None:
    texts, prompts = load_texts(), load_prompts()
    folder = external_folder(
        tmp_path / "espeak", texts, [("espeak-ng", t, "en_flite_slt", 22_050) for t in ("en_01", "en_03")]
    )
    summary = set_plan(app, anchor="lowpass", anchor_rate=0.3, reference_rate=0.3, external=str(folder))
    assert "10 / 10 generated" in summary and "espeak-ng" in summary
    assert "1 anchor trial(s)" in summary and "1 hidden-reference trial(s)" in summary and "LUFS" in summary
    plan = load_plan(app["data"] / "active_plan.json")
    assert plan.external_configs == ("espeak-ng",) and plan.anchor_condition.label == "float32-n10-lp3500"

    for listener_id, sloppy in (("careful", False), ("careful2", False), ("sloppy", True)):
        trials = assign_trials(plan, listener_id, texts, prompts)
        assert Counter(t.kind for t in trials) == {"test": 3, "anchor": 1, "reference": 1}
        listener = client(app, listener_id)
        listener.predict(api_name="/blind_start")
        for trial in trials:
            listen_both(app, listener)
            scores = {"A": 4, "B": 3}  # the baseline better than anything it is compared with
            if trial.kind == "anchor":
                scores = {"A": 1, "B": 5} if sloppy else {"A": 5, "B": 1}
            if trial.kind == "reference":
                scores = {"A": 5, "B": 1} if sloppy else {"A": 4, "B": 4}
            other = "B" if trial.shown_first == "A" else "A"
            listener.predict(scores[trial.shown_first], scores[other], "none", api_name="/blind_rate")
            listener.predict(api_name="/blind_next")
    mine = [r for r in rows(app) if r["listener_id"] in ("careful", "careful2", "sloppy")]
    assert Counter(r["trial_kind"] for r in mine) == {"test": 9, "anchor": 3, "reference": 3}
    assert {r["a_config"] for r in mine} | {r["b_config"] for r in mine} <= set(LABELS)
    assert {r["b_backend"] for r in mine if r["b_config"] == "espeak-ng"} == {"external"}
    assert all(r["a_config"] == r["b_config"] == "float32-n10" for r in mine if r["trial_kind"] == "reference")

    log = app["csv"]
    out = tmp_path / "report.json"
    argv = [str(log), "--baseline", "float32-n10", "--anchor", "float32-n10-lp3500", "--mode", "blind",
            "--bootstrap", "200", "--json", str(out), "--xlsx", str(tmp_path / "sheet.xlsx")]  # fmt: skip
    assert report.main([*argv, "--exclude-flagged"]) == 0
    doc = json.loads(out.read_text())
    assert doc["excluded_listeners"] == ["sloppy"] and "hidden low anchor" in doc["exclusion_rule"]
    assert "espeak-ng" in {c["config"] for c in doc["configs"]} and (tmp_path / "sheet.xlsx").is_file()
    flags = {s["listener_id"]: s["flags"] for s in doc["listeners"]}
    assert {"anchor_above_baseline", "inconsistent_reference"} <= set(flags["sloppy"])
    # The Results tab applies the same rule.
    _table, method, *_ = app["experimenter"].predict(PASSWORD, "float32-n10", "blind", True, api_name="/results")
    assert "excluded (sloppy)" in method


def test_controls_are_local_only_without_a_password(tmp_path: Path, capsys) -> None:
    with running_app(tmp_path, admin_password=None) as open_app:
        printed = capsys.readouterr().out
        password = printed.split("use this run's password: ")[1].split()[0]
        local = client(open_app)
        assert "No test plan is active yet" in local.predict("", api_name="/blind_status")
        proxied = client(open_app, headers={"X-Forwarded-For": "203.0.113.9"})
        with pytest.raises(AppError, match="admin password"):
            proxied.predict("", api_name="/blind_status")
        with pytest.raises(AppError, match="admin password"):
            proxied.predict("", "float32-n10", "all", False, api_name="/results")
        assert "No test plan" in proxied.predict(password, api_name="/blind_status")
