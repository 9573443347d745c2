"""Hidden controls in plans and statistics, the low-pass anchor, external clip folders, served copies.

No server: plans, assignment, the clip bank, screening and the report as functions. Speech for the
external system is made with espeak-ng (a real other TTS), anchors are checked by their spectrum.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from abapp.access import AdminAccess, is_local
from abapp.served_clips import LEAD_MAX_S, PCM16_STEP, served_audio, served_length, write_served
from eval.serving import loudness
from eval.serving.anchors import lowpass
from eval.serving.assignment import assign_trials
from eval.serving.clipbank import ClipBank
from eval.serving.conditions import Condition, check_external_label
from eval.serving.external import ExternalClipsError, import_folder, validate_folder
from eval.serving.external_manifest import MANIFEST_NAME
from eval.serving.plan_clips import import_external, plan_clip_keys
from eval.serving.ratings_schema import COLUMNS
from eval.serving.trials import plan_from_dict
from eval.statistics import analysis, controls, report, screening
from eval.statistics.ratings_io import read_ratings
from tests.conftest import judgement

RATE = 24_000


def plan_doc(**changes) -> dict:
    doc = {
        "name": "controls",
        "texts": ["en_01", "en_02", "en_03", "en_04"],
        "prompts": ["en_flite_slt", "en_us_espeak_m"],
        "configs": ["float32-n10", "float32-n5", "bfloat16-n5"],
        "baseline": "float32-n10",
        "trials_per_listener": 10,
    }
    return doc | changes


# ----------------------------------------------------------------------------- plans


def test_controls_are_mixed_in_at_the_stated_rate(texts, prompts) -> None:
    plain = plan_from_dict(plan_doc())
    plan = plan_from_dict(plan_doc(anchor="lowpass", anchor_rate=0.2, reference_rate=0.1))
    assert plan.controls_per_listener() == (2, 1)
    assert plan.anchor_condition == Condition("float32-n10-lp3500", "lowpass", plain.configs[0], "float32-n10")
    trials = assign_trials(plan, "alice", texts, prompts)
    assert trials == assign_trials(plan, "alice", texts, prompts)
    kinds = Counter(t.kind for t in trials)
    assert kinds == {"test": 10, "anchor": 2, "reference": 1}
    assert [t.index for t in trials] == list(range(13)) and len({t.trial_id for t in trials}) == 13
    for t in trials:
        if t.kind == "anchor":
            assert (t.config_a.label, t.config_b.label) == ("float32-n10", "float32-n10-lp3500")
        if t.kind == "reference":
            assert t.config_a == t.config_b == plan.baseline_condition
    anchor_sides = Counter(t.shown_first for t in trials if t.kind == "anchor")
    assert anchor_sides == {"A": 1, "B": 1}
    # The test trials are those a plan without controls gives (same pairs and balance).
    tests = [t for t in trials if t.kind == "test"]
    assert Counter((t.config_a.label, t.config_b.label) for t in tests) == Counter(
        (t.config_a.label, t.config_b.label) for t in assign_trials(plain, "alice", texts, prompts)
    )


def test_a_plan_without_controls_keeps_its_trial_ids(texts, prompts) -> None:
    # Trial ids derive from the plan digest; fields added later count only when set.
    plan = plan_from_dict(plan_doc())
    doc = json.loads(plan.to_json())
    assert plan_from_dict(doc).digest() == plan.digest()
    old_fields = {"name", "text_ids", "prompt_ids", "configs", "baseline", "trials_per_listener", "seed",
                  "comparisons", "match_language"}  # fmt: skip
    old_doc = {k: v for k, v in doc.items() if k in old_fields}
    assert plan_from_dict(old_doc).digest() == plan.digest()
    assert plan_from_dict(plan_doc(reference_rate=0.1)).digest() != plan.digest()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"anchor": "float32-n5"}, "also under test"),
        ({"anchor": "lowpass", "anchor_rate": 0}, "anchor_rate"),
        ({"anchor_rate": 0.2}, "anchor_rate"),
        ({"reference_rate": 1.5}, "reference_rate"),
        ({"anchor": "fp32-n99"}, "configuration label"),
    ],
)
def test_bad_controls_are_refused(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        plan_from_dict(plan_doc(**change))


def test_a_configuration_anchor_is_rendered_with_the_plan() -> None:
    plan = plan_from_dict(plan_doc(anchor="float32-n1"))
    assert plan.anchor_rate == pytest.approx(0.1)  # the stated default
    assert [c.label for c in plan.rendered_configs] == ["float32-n10", "float32-n5", "bfloat16-n5", "float32-n1"]
    assert [c.label for c in plan.conditions] == ["float32-n10", "float32-n5", "bfloat16-n5"]


def test_external_labels_never_read_as_ours() -> None:
    assert check_external_label("trtllm-bf16-n5") == "trtllm-bf16-n5"
    for bad in ("float16-n5", "BF16-N5", "has space", "", "x" * 49, "../up"):
        with pytest.raises(ValueError):
            check_external_label(bad)


# ----------------------------------------------------------------------------- anchor


def test_lowpass_anchor_removes_what_is_above_3_5_khz() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(RATE * 2).astype(np.float32) * 0.1
    out = lowpass(noise, RATE)
    spectrum_in, spectrum_out = (np.abs(np.fft.rfft(x)) ** 2 for x in (noise, out))
    freqs = np.fft.rfftfreq(noise.size, 1 / RATE)
    below, above = freqs < 2_500, freqs > 5_000
    gain_below = 10 * np.log10(spectrum_out[below].sum() / spectrum_in[below].sum())
    gain_above = 10 * np.log10(spectrum_out[above].sum() / spectrum_in[above].sum())
    assert gain_below > -0.5 and gain_above < -40
    lag = np.argmax(np.correlate(out[:4800], noise[:4800], mode="full")) - 4799
    assert lag == 0  # zero phase: no delay against the original


# ----------------------------------------------------------------------------- external clips


def espeak_clip(path: Path, text: str, rate: int = RATE) -> None:
    """Real speech from another TTS system (espeak-ng), resampled with sox to ``rate``."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", str(path)], check=True)
    raw.unlink()


def external_folder(root: Path, texts, entries) -> Path:
    """A folder of espeak-ng clips and its manifest; ``entries``: (label, text id, prompt id, rate)."""
    clips = []
    for label, text_id, prompt_id, rate in entries:
        file = Path(label) / f"{text_id}.{prompt_id}.wav"
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        espeak_clip(root / file, texts[text_id].text, rate)
        clips.append({"config": label, "text_id": text_id, "prompt_id": prompt_id, "file": str(file), "rtf": 0.1})
    (root / MANIFEST_NAME).write_text(json.dumps({"system": "espeak-ng", "clips": clips}))
    return root


needs_espeak = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox absent")


@needs_espeak
def test_external_folder_is_validated_and_imported(tmp_path: Path, texts, prompts) -> None:
    folder = external_folder(
        tmp_path / "ext",
        texts,
        [("espeak-a", "en_01", "en_flite_slt", 22_050), ("espeak-a", "en_02", "en_flite_slt", 24_000)],
    )
    external = validate_folder(folder, texts, prompts)
    assert external.labels == ("espeak-a",) and external.system == "espeak-ng"
    bank = ClipBank(tmp_path / "bank")
    keys = import_folder(external, bank)
    assert set(keys) == {("en_01", "en_flite_slt", "espeak-a"), ("en_02", "en_flite_slt", "espeak-a")}
    clip = bank.get(keys[("en_01", "en_flite_slt", "espeak-a")])
    audio, rate = clip.read()
    assert rate == RATE and clip.meta["original_sample_rate"] == 22_050  # resampled into the bank
    assert clip.meta["rtf"] == 0.1 and clip.meta["backend"] == "external"
    record = clip.loudness
    assert record.before_lufs == pytest.approx(loudness.integrated_loudness(audio, rate), abs=1e-6)
    heard, _ = clip.stimulus_audio()
    assert loudness.integrated_loudness(heard, rate) == pytest.approx(loudness.TARGET_LUFS, abs=0.1)
    assert import_folder(external, bank) == keys  # content keys: nothing imported twice


@needs_espeak
def test_every_problem_of_a_folder_is_reported_at_once(tmp_path: Path, texts, prompts) -> None:
    folder = external_folder(tmp_path / "ext", texts, [("espeak-a", "en_01", "en_flite_slt", 24_000)])
    sf.write(folder / "stereo.wav", np.zeros((RATE, 2), dtype=np.float32) + 0.1, RATE)
    sf.write(folder / "low.wav", np.full(RATE, 0.1, dtype=np.float32), 8_000)
    sf.write(folder / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
    (folder / "junk.wav").write_text("not audio")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    bad = [
        {"config": "float16-n5", "text_id": "en_01", "prompt_id": "en_flite_slt", "file": "x.wav"},
        {"config": "ok-sys", "text_id": "nope", "prompt_id": "en_flite_slt", "file": "x.wav"},
        {"config": "ok-sys", "text_id": "en_01", "prompt_id": "en_flite_slt", "file": "../escape.wav"},
        {"config": "ok-sys", "text_id": "en_01", "prompt_id": "en_flite_slt", "file": "stereo.wav"},
        {"config": "ok-sys", "text_id": "en_02", "prompt_id": "en_flite_slt", "file": "low.wav"},
        {"config": "ok-sys", "text_id": "en_03", "prompt_id": "en_flite_slt", "file": "silent.wav"},
        {"config": "ok-sys", "text_id": "en_04", "prompt_id": "en_flite_slt", "file": "junk.wav"},
        {"config": "ok-sys", "text_id": "en_05", "prompt_id": "en_flite_slt", "file": "low.wav", "rtf": -1},
        manifest["clips"][0],  # a second clip of the same stimulus
    ]
    (folder / MANIFEST_NAME).write_text(json.dumps({"clips": manifest["clips"] + bad}))
    with pytest.raises(ExternalClipsError) as err:
        validate_folder(folder, texts, prompts)
    message = str(err.value)
    for expected in ("reads as one of this app", "'nope'", "outside the folder", "2 channels", "8000 Hz",
                     "silent", "not readable audio", "unknown field|non-negative", "a second clip"):  # fmt: skip
        assert any(part for part in message.split(";") if re.search(expected, part)), expected


@needs_espeak
def test_a_plan_with_external_clips_names_every_key_or_what_is_missing(tmp_path: Path, texts, prompts) -> None:
    folder = external_folder(tmp_path / "ext", texts, [("espeak-a", "en_01", "en_flite_slt", 24_000)])
    doc = plan_doc(texts=["en_01"], prompts=["en_flite_slt"], configs=["float32-n10"], trials_per_listener=1)
    plan = plan_from_dict(doc | {"external": {"folder": "ext"}, "anchor": "lowpass"}, base_dir=tmp_path)
    assert plan.external_configs == ("espeak-a",) and Path(plan.external_dir) == folder.resolve()
    bank = ClipBank(tmp_path / "bank")
    keys = plan_clip_keys(plan, "m", texts, prompts, import_external(plan, bank, texts, prompts))
    assert set(keys) == {("en_01", "en_flite_slt", label) for label in ("float32-n10", "espeak-a", "float32-n10-lp3500")}
    wider = plan_from_dict({**doc, "texts": ["en_01", "en_02"], "external": {"folder": str(folder)}})
    with pytest.raises(ValueError, match="espeak-a for en_02 / en_flite_slt"):
        plan_clip_keys(wider, "m", texts, prompts, import_external(wider, bank, texts, prompts))
    with pytest.raises(ValueError, match="two configurations"):  # one external configuration alone
        plan_from_dict({**doc, "configs": [], "baseline": "espeak-a", "external": {"folder": str(folder)}})


# ----------------------------------------------------------------------------- served copies


def test_every_serving_is_new_bytes_of_equal_length(tmp_path: Path) -> None:
    t = np.arange(RATE) / RATE
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    shorter = clip[: RATE // 2]
    length = served_length(clip.size, RATE)
    assert length == clip.size + round(LEAD_MAX_S * RATE)
    paths = [write_served(x, RATE, length) for x in (clip, clip, shorter)]
    digests = {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 3 and len({Path(p).parent for p in paths}) == 3
    assert len({Path(p).stat().st_size for p in paths}) == 1  # same length, same size
    a, b = (sf.read(p, dtype="float32")[0] for p in paths[:2])
    assert not np.array_equal(a, b)
    # Each copy is the clip (shifted by its lead-in) plus dither of about one 16-bit step.
    for served in (a, b):
        lead = int(np.argmax(np.correlate(served[:2400], clip[:1200], mode="valid")))
        assert lead <= round(LEAD_MAX_S * RATE)
        residual = served[lead : lead + clip.size] - clip
        assert np.max(np.abs(residual)) <= 2.5 * PCM16_STEP
    with pytest.raises(ValueError, match="does not fit"):
        served_audio(clip, RATE, clip.size - 1, np.random.default_rng(0))


# ----------------------------------------------------------------------------- access


class _Request:
    def __init__(self, host: str, headers: dict | None = None) -> None:
        self.client = type("Client", (), {"host": host})()
        self.headers = headers or {}


def test_controls_locked_unless_local_or_password() -> None:
    generated = AdminAccess.from_setting(None)
    assert generated.generated and len(generated.password) >= 16
    assert generated.password in generated.console_notice()
    assert generated.allows(None, _Request("127.0.0.1")) and generated.allows("", _Request("::1"))
    assert not generated.allows(None, _Request("10.0.0.7"))
    assert not generated.allows(None, _Request("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}))  # a proxy
    assert generated.allows(generated.password, _Request("10.0.0.7"))
    assert not is_local(None)
    configured = AdminAccess.from_setting("s3cret")
    assert not configured.allows(None, _Request("127.0.0.1")) and configured.allows("s3cret", _Request("10.0.0.7"))
    assert configured.console_notice() == ""


# ----------------------------------------------------------------------------- screening and report


def _log(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(COLUMNS) + "\n")
    table = pd.DataFrame([{**dict.fromkeys(COLUMNS, ""), "schema_version": 3, "timestamp_utc": "t", **r} for r in rows])
    table[list(COLUMNS)].to_csv(path, mode="a", header=False, index=False)
    return path


def controlled_log(path: Path) -> Path:
    """Six listeners x 4 texts: base 4 vs fast 4 (+-1); each has an anchor and a reference trial.
    'sloppy' rates the anchor 5 over a baseline 1 and the identical reference clips 5 and 1."""
    rows = []
    for k, listener in enumerate(["l1", "l2", "l3", "l4", "l5", "sloppy"]):
        for j in range(4):
            fast = 3 + (j + k) % 3
            rows.append(
                judgement(f"{listener}-t{j}", listener) | {"text_id": f"t{j}", "score_a": 4, "score_b": fast}
            )
        bad = listener == "sloppy"
        base_cells = {"a_config": "float16-n10", "a_dtype": "float16", "a_flow_steps": 10}
        rows.append(
            judgement(f"{listener}-anchor", listener)
            | {"trial_kind": "anchor", "b_config": "float16-n10-lp3500", "b_dtype": "float16", "b_flow_steps": 10}
            | {"score_a": 1 if bad else 5, "score_b": 5 if bad else 1}
        )
        rows.append(
            judgement(f"{listener}-ref", listener)
            | {"trial_kind": "reference", "b_config": "float16-n10", "b_dtype": "float16", "b_flow_steps": 10}
            | base_cells
            | {"score_a": 5 if bad else 4, "score_b": 1 if bad else 4}
        )
    return _log(path, rows)


def test_screening_flags_what_the_controls_show(tmp_path: Path) -> None:
    table = read_ratings(controlled_log(tmp_path / "r.csv"))
    screens = {s.listener_id: s for s in screening.screen_listeners(table, "float16-n10", "float16-n10-lp3500")}
    assert set(screens["sloppy"].flags) >= {"anchor_above_baseline", "inconsistent_reference"}
    assert (screens["sloppy"].n_reference, screens["sloppy"].reference_misses) == (1, 1)
    assert all("inconsistent_reference" not in s.flags for k, s in screens.items() if k != "sloppy")


def test_report_uses_test_trials_and_can_exclude_flagged_listeners(tmp_path: Path, capsys) -> None:
    log = controlled_log(tmp_path / "r.csv")
    kept = analysis.summarize(log, "float16-n10", anchor="float16-n10-lp3500")
    dropped = analysis.summarize(log, "float16-n10", anchor="float16-n10-lp3500", exclude_flagged=True)
    assert [c.config for c in kept.configs] == ["float16-n10", "bfloat16-n5"]  # no control trials in the MOS
    assert kept.n_judgements == 24 and dropped.n_judgements == 20 and dropped.excluded_listeners == ("sloppy",)
    # Independent truth: the plain mean of the test trials' scores of the listeners kept.
    raw = pd.read_csv(log, dtype=str)
    tests = raw[(raw["trial_kind"] == "test") & (raw["listener_id"] != "sloppy")]
    assert dropped.config("bfloat16-n5").mos == pytest.approx(tests["score_b"].astype(int).mean())
    assert any(controls.EXCLUSION_RULE in w for w in dropped.warnings)
    assert any("12 hidden control trial(s) (6 anchor, 6 reference)" in w for w in kept.warnings)
    assert report.main([str(log), "--baseline", "float16-n10", "--exclude-flagged", "--bootstrap", "200",
                        "--json", str(tmp_path / "r.json")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["excluded_listeners"] == ["sloppy"] and doc["exclusion_rule"] == controls.EXCLUSION_RULE
    assert "sloppy" in capsys.readouterr().out


# ----------------------------------------------------------------------------- clips from a server


class _FakeCosyVoiceServer(http.server.BaseHTTPRequestHandler):
    """The official FastAPI server's zero-shot endpoint as seen from outside: multipart form in,
    raw 16-bit mono PCM at 24 kHz streamed out (a tone whose length follows the text)."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        fields = {name: re.search(rf'name="{name}"(?:; filename="[^"]*")?\r\n(?:[^\r]*\r\n)?\r\n'.encode(), body)
                  for name in ("tts_text", "prompt_text", "prompt_wav")}  # fmt: skip
        _FakeCosyVoiceServer.seen.append({"path": self.path, **{k: v is not None for k, v in fields.items()}})
        text = body.split(b'name="tts_text"\r\n\r\n')[1].split(b"\r\n")[0].decode()
        t = np.arange(int(0.08 * len(text) * RATE)) / RATE
        pcm = (0.3 * np.sin(2 * np.pi * 200 * t) * 32767).astype("<i2").tobytes()
        self.send_response(200)
        self.end_headers()
        for start in range(0, len(pcm), 9_600):  # streamed in chunks, as the server yields them
            self.wfile.write(pcm[start : start + 9_600])

    def log_message(self, *args) -> None:
        pass


def test_a_folder_made_from_a_running_server_validates(tmp_path: Path, texts, prompts) -> None:
    from eval.serving import external_server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeCosyVoiceServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan_doc(texts=["en_01", "en_02"], prompts=["en_flite_slt"], trials_per_listener=2)))
    out = tmp_path / "served"
    try:
        argv = [str(plan_file), "--server", f"http://127.0.0.1:{server.server_port}", "--label", "srv-n10", "--out", str(out)]
        assert external_server.main(argv) == 0
    finally:
        server.shutdown()
    assert _FakeCosyVoiceServer.seen[-1] == {"path": "/inference_zero_shot", "tts_text": True, "prompt_text": True,
                                             "prompt_wav": True}  # fmt: skip
    external = validate_folder(out, texts, prompts)
    assert [(c.text_id, c.sample_rate) for c in external.clips] == [("en_01", RATE), ("en_02", RATE)]
    assert external.clips[0].duration_s == pytest.approx(0.08 * len(texts["en_01"].text), abs=1e-3)
    assert all(c.rtf is not None and c.latency_s is not None and c.latency_s >= 0 for c in external.clips)


def test_the_example_plan_with_controls(texts, prompts) -> None:
    from eval.serving.trials import load_plan

    plan = load_plan(Path(__file__).resolve().parents[3] / "assets" / "plans" / "controls.yaml")
    assert plan.anchor_condition.label == "float16-n10-lp3500" and plan.reveal_at_end
    assert Counter(t.kind for t in assign_trials(plan, "x", texts, prompts)) == {"test": 20, "anchor": 2, "reference": 2}
