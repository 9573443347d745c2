"""Regenerate the voice prompt clips in ``assets/prompts/`` from Debian's espeak-ng and flite.

    python scripts/make_prompts.py            # (re)write every clip and manifest.json
    python scripts/make_prompts.py --check    # verify the files on disk against manifest.json

Each clip is synthesised by a command-line TTS tool, trimmed of leading/trailing silence, resampled
to 22.05 kHz with soxr, peak-normalised and written as 16-bit mono PCM WAV. Every step is
deterministic, so the same tool versions give byte-identical files (the manifest records the
versions, the exact command and each file's sha256).

NOTE: these are robotic voices on purpose: they are free of any licence question and small, and
they are enough to exercise the pipeline and the app. Real listening tests should use real speech.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
PROMPT_DIR = ROOT / "assets" / "prompts"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

TARGET_RATE = 22_050  # Hz: espeak-ng's native rate; flite's 8/16 kHz output is resampled to it
PEAK = 0.89  # about -1 dBFS: the same loudness ceiling for every clip
SILENCE_THRESHOLD = 0.01  # |x| below this (after normalising to peak 1) counts as silence when trimming
KEEP_MARGIN_S = 0.10  # seconds of silence kept before and after the speech
MIN_SECONDS = 3.0  # CosyVoice2 prompts work best with 3-10 s; we keep them short to stay small
MAX_SECONDS = 8.0


@dataclass(frozen=True)
class PromptSpec:
    """One prompt clip: what is said, by which tool and voice, at which rate and pitch."""

    id: str
    tool: str  # "espeak-ng" | "flite"
    voice: str  # espeak-ng voice (with optional +variant) or flite voice name
    language: str  # "en" | "zh"
    transcript: str
    rate: float  # espeak-ng: words per minute (-s); flite: duration_stretch (>1 is slower)
    pitch: int | None = None  # espeak-ng only: 0-99 (-p)

    def command(self, out_wav: str) -> list[str]:
        """The exact argv that synthesises this clip into ``out_wav``."""
        if self.tool == "espeak-ng":
            pitch = [] if self.pitch is None else ["-p", str(self.pitch)]
            return [
                "espeak-ng",
                "-v",
                self.voice,
                "-s",
                str(int(self.rate)),
                *pitch,
                "-w",
                out_wav,
                self.transcript,
            ]
        if self.tool == "flite":
            stretch = ["--setf", f"duration_stretch={self.rate}"]
            return ["flite", "-voice", self.voice, *stretch, "-t", self.transcript, "-o", out_wav]
        raise ValueError(f"unknown tool {self.tool!r}")


# English and Mandarin, male/female variants, slow and fast rates, several engines.
SPECS: tuple[PromptSpec, ...] = (
    PromptSpec(
        "en_us_espeak_m",
        "espeak-ng",
        "en-us",
        "en",
        "The quick brown fox jumps over the lazy dog near the quiet river bank.",
        rate=165,
        pitch=45,
    ),
    PromptSpec(
        "en_gb_espeak_f",
        "espeak-ng",
        "en-gb+f3",
        "en",
        "Please leave your umbrella by the door, it is raining again this morning.",
        rate=140,
        pitch=70,
    ),
    PromptSpec(
        "zh_espeak_m",
        "espeak-ng",
        "cmn",
        "zh",
        "今天天气很好，我们去公园散步吧。",
        rate=150,
        pitch=50,
    ),
    PromptSpec(
        "zh_espeak_f_slow",
        "espeak-ng",
        "cmn+f2",
        "zh",
        "请在前面的路口向右转。",
        rate=130,
        pitch=68,
    ),
    PromptSpec(
        "en_flite_slt",
        "flite",
        "slt",
        "en",
        "She sells fresh bread and warm coffee at the little shop on the corner.",
        rate=1.0,
    ),
    PromptSpec(
        "en_flite_rms_slow",
        "flite",
        "rms",
        "en",
        "A good voice prompt is clear, steady, and a few seconds long.",
        rate=1.25,
    ),
    PromptSpec(
        "en_flite_awb_fast",
        "flite",
        "awb",
        "en",
        "Our train leaves at half past seven, so we should pack our bags tonight.",
        rate=0.85,
    ),
    PromptSpec(
        "en_flite_kal",
        "flite",
        "kal16",
        "en",
        "Numbers like twenty one and ninety nine are read out one word at a time.",
        rate=1.0,
    ),
)


@functools.cache
def tool_version(tool: str) -> str:
    """The version line the tool prints, e.g. ``flite-2.2-current Sep 2018``."""
    # NOTE: flite prints its version and exits with status 1, so the status is not checked.
    proc = subprocess.run([tool, "--version"], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    for line in out.splitlines():
        if "version" in line.lower() or "text-to-speech" in line.lower():
            value = line.split(":", 1)[-1].strip()
            # Drop trailing extras: espeak-ng's "  Data at: ...", flite's " (http://...)".
            return value.split("  ")[0].split(" (")[0]
    return out.strip().splitlines()[0]


def _trim_and_normalise(audio: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading/trailing silence (keeping a short margin) and scale the peak to PEAK."""
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        raise RuntimeError("the tool produced silence")
    loud = np.flatnonzero(np.abs(audio) / peak > SILENCE_THRESHOLD)
    margin = int(KEEP_MARGIN_S * rate)
    start = max(0, int(loud[0]) - margin)
    stop = min(len(audio), int(loud[-1]) + 1 + margin)
    trimmed = audio[start:stop]
    return trimmed * (PEAK / float(np.max(np.abs(trimmed))))


def render(spec: PromptSpec, out_path: Path) -> dict:
    """Synthesise one clip to ``out_path`` and return its manifest entry."""
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = str(Path(tmp) / "raw.wav")
        subprocess.run(spec.command(raw_path), check=True, capture_output=True)
        audio, rate = sf.read(raw_path, dtype="float64", always_2d=False)
    if audio.ndim != 1:
        audio = audio.mean(axis=1)
    audio = _trim_and_normalise(audio, rate)
    if rate != TARGET_RATE:
        audio = soxr.resample(audio, rate, TARGET_RATE, quality="VHQ")
    # Resampling can overshoot by a hair; the clip never touches full scale.
    audio = np.clip(audio, -1.0, 1.0)
    pcm = np.round(audio * 32767.0).astype("<i2")
    duration = len(pcm) / TARGET_RATE
    if not MIN_SECONDS <= duration <= MAX_SECONDS:
        raise RuntimeError(f"{spec.id}: {duration:.2f} s is outside [{MIN_SECONDS}, {MAX_SECONDS}] s")
    sf.write(out_path, pcm, TARGET_RATE, subtype="PCM_16", format="WAV")
    return {
        "id": spec.id,
        "file": out_path.name,
        "transcript": spec.transcript,
        "language": spec.language,
        "voice": spec.voice,
        "rate": spec.rate,
        "pitch": spec.pitch,
        "tool": spec.tool,
        "tool_version": tool_version(spec.tool),
        "command": spec.command("<raw.wav>"),
        "postprocess": (
            f"trim silence below {SILENCE_THRESHOLD} of peak keeping {KEEP_MARGIN_S} s; "
            f"soxr VHQ to {TARGET_RATE} Hz; peak {PEAK}; 16-bit PCM"
        ),
        "sample_rate": TARGET_RATE,
        "duration_s": round(duration, 3),
        "sha256": sha256_file(out_path),
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out_dir: Path) -> dict:
    """Render every clip of :data:`SPECS` into ``out_dir`` and write manifest.json there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [render(spec, out_dir / f"{spec.id}.wav") for spec in SPECS]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "scripts/make_prompts.py",
        "resampler": f"soxr {soxr.__version__}",
        "note": "Synthetic voices from Debian espeak-ng/flite; for exercising the pipeline, not for MOS tests.",
        "prompts": entries,
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (out_dir / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def check(out_dir: Path) -> list[str]:
    """Problems of the files in ``out_dir`` against its manifest (empty when all is well)."""
    manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    problems = []
    for entry in manifest["prompts"]:
        path = out_dir / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['id']}: {path.name} is missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['id']}: sha256 of {path.name} differs from the manifest")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=PROMPT_DIR, help="output folder (default assets/prompts)")
    parser.add_argument("--check", action="store_true", help="only verify the files against manifest.json")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    manifest = build(args.out)
    total = sum((args.out / e["file"]).stat().st_size for e in manifest["prompts"])
    for e in manifest["prompts"]:
        print(f"{e['id']:22s} {e['language']}  {e['duration_s']:5.2f} s  {e['tool']} {e['voice']}")
    print(f"{len(manifest['prompts'])} clips, {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
