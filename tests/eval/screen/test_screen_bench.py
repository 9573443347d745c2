"""eval.screen.bench runs end to end on a short clip (the numbers themselves belong in BENCHMARKS.md)."""

from __future__ import annotations

import json

from eval.screen import bench


def test_bench_writes_every_set(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--runs", "1", "--warmup", "0", "--clip_s", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [s["name"] for s in doc["sets"]] == list(bench.MEASURE_SETS)
    assert all(s["median_s"] > 0 for s in doc["sets"]) and doc["python_thread_speed_beside_screen"] > 0
    assert {m["name"] for m in doc["measures"]} >= {"dnsmos", "sim_resemblyzer", "asr_pocketsphinx"}


def test_bench_refuses_bad_arguments(capsys):
    assert bench.main(["--runs", "0"]) == 2
    assert bench.main(["--synthesis"]) == 2
    assert "--synthesis needs" in capsys.readouterr().err


def test_speech_clip_is_real_speech_of_the_asked_length():
    audio, text, (prompt, rate) = bench.speech_clip(10.0)
    assert audio.size == 10 * 24_000 and "She sells fresh bread" in text and rate > 0 and prompt.size
