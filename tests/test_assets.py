"""The shipped prompt clips, their manifest and the test sentences."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "assets" / "prompts"
TEXTS = ROOT / "assets" / "texts" / "sentences.json"
MANIFEST_KEYS = {
    "id",
    "file",
    "transcript",
    "language",
    "voice",
    "rate",
    "tool",
    "tool_version",
    "command",
    "sha256",
}


def manifest() -> dict:
    return json.loads((PROMPTS / "manifest.json").read_text(encoding="utf-8"))


def test_prompt_clips_match_manifest() -> None:
    entries = manifest()["prompts"]
    assert len(entries) >= 6
    assert len({e["id"] for e in entries}) == len(entries)
    assert {e["language"] for e in entries} >= {"en", "zh"}
    assert len({(e["tool"], e["voice"]) for e in entries}) >= 6
    assert len({e["rate"] for e in entries}) >= 3
    for e in entries:
        assert set(e) >= MANIFEST_KEYS, e["id"]
        path = PROMPTS / e["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"], e["id"]
        info = sf.info(path)
        assert info.format == "WAV" and info.subtype == "PCM_16" and info.channels == 1
        assert info.samplerate in (22_050, 24_000)
        assert 3.0 <= info.duration <= 8.0, (e["id"], info.duration)
        assert e["transcript"].strip()
        assert e["command"][0] == e["tool"] and e["transcript"] in e["command"]
    wavs = {p.name for p in PROMPTS.glob("*.wav")}
    assert wavs == {e["file"] for e in entries}  # no stray clip without provenance
    assert sum(p.stat().st_size for p in PROMPTS.iterdir()) < 2_000_000


def test_clips_are_not_silent_or_clipped() -> None:
    for e in manifest()["prompts"]:
        audio, _ = sf.read(PROMPTS / e["file"], dtype="float32")
        peak = float(abs(audio).max())
        assert 0.5 < peak < 0.99, e["id"]
        assert float((audio**2).mean()) ** 0.5 > 0.02, e["id"]


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite")), reason="espeak-ng/flite absent"
)
def test_script_regenerates_identical_clips(tmp_path: Path) -> None:
    entries = manifest()["prompts"]
    versions = {
        "espeak-ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout,
        "flite": subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout,
    }
    if any(e["tool_version"] not in versions[e["tool"]] for e in entries):
        pytest.skip("installed espeak-ng/flite versions differ from the manifest's")
    script = ROOT / "scripts" / "make_prompts.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    for e in entries:
        assert (tmp_path / e["file"]).read_bytes() == (PROMPTS / e["file"]).read_bytes(), e["id"]
    regenerated = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert regenerated == manifest()
    check = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_sentences() -> None:
    items = json.loads(TEXTS.read_text(encoding="utf-8"))["sentences"]
    assert len(items) >= 40
    assert len({s["id"] for s in items}) == len(items)
    by_lang = {lang: [s for s in items if s["language"] == lang] for lang in ("en", "zh")}
    assert len(by_lang["en"]) >= 15 and len(by_lang["zh"]) >= 15
    for lang, group in by_lang.items():
        lengths = [len(s["text"]) for s in group]
        assert min(lengths) <= 15 and max(lengths) >= 45, lang  # short and long
        assert any(any(ch.isdigit() for ch in s["text"]) for s in group), lang  # numbers
        assert sum(any(p in s["text"] for p in '?!;:"…“”？！；：') for s in group) >= 3, lang
    for s in items:
        assert s["text"] == s["text"].strip() and s["text"]
