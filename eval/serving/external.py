"""Clips made by another system (a TensorRT-LLM server, LightTTS, a CosyVoice2 deployment), in a blind test.

A folder holds the audio files and ``manifest.json``::

    {"system": "CosyVoice2 server, TensorRT-LLM, 5 flow steps",      # free text, optional
     "clips": [{"config": "trtllm-bf16-n5", "text_id": "en_01", "prompt_id": "en_flite_slt",
                "file": "trtllm-bf16-n5/en_01.en_flite_slt.wav",
                "rtf": 0.21, "latency_s": 0.35}]}                      # rtf / latency_s optional

``text_id``/``prompt_id`` are ids of ``assets/texts/sentences.json`` and ``assets/prompts/manifest.json``
(the clip says that text in that prompt's voice). :func:`validate_folder` checks every entry (the
label is not one of this app's labels, the ids exist, the file is inside the folder, readable,
mono, at a usable sample rate, of a usable length and not silent) and reports every problem at
once; :func:`import_folder` puts the clips into the clip bank at the bank's sample rate, loudness-
matched like every other clip, under content keys. ``python -m eval.serving.external_server`` makes such
a folder from a running CosyVoice2 server.

    python -m eval.serving.external FOLDER          # validate and summarise, exit 2 when invalid
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from eval.serving.conditions import EXTERNAL_RAN, check_external_label
from eval.serving.external_manifest import MANIFEST_NAME, ExternalClipsError, read_manifest
from eval.serving.trials import PromptAsset, TextItem, load_prompts, load_texts
from tts_core.constants import SAMPLE_RATE

if TYPE_CHECKING:
    from eval.serving.clipbank import ClipBank

MIN_SAMPLE_RATE = 16_000  # Hz: below this the clip cannot sound like a 24 kHz rendering anyway
MAX_SAMPLE_RATE = 48_000  # Hz
MIN_CLIP_SECONDS = 0.3
MAX_CLIP_SECONDS = 60.0
SILENCE_PEAK = 1e-4  # a clip whose largest sample is below this (-80 dBFS) is taken as silent
ENTRY_FIELDS = ("config", "text_id", "prompt_id", "file")
OPTIONAL_FIELDS = ("rtf", "latency_s")
MAX_PROBLEMS_LISTED = 10
EXTERNAL_KEY_VERSION = 1
EXIT_INVALID = 2


@dataclass(frozen=True)
class ExternalClip:
    """One validated entry of a manifest."""

    config: str
    text_id: str
    prompt_id: str
    path: Path
    sha256: str  # of the file's bytes
    sample_rate: int
    n_samples: int
    rtf: float | None
    latency_s: float | None

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def stimulus(self) -> tuple[str, str, str]:
        return self.text_id, self.prompt_id, self.config


@dataclass(frozen=True)
class ExternalFolder:
    """A validated folder: its description and clips."""

    folder: Path
    system: str
    clips: tuple[ExternalClip, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.config for c in self.clips))


def _optional_number(entry: dict, name: str) -> float | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' must be a non-negative number, got {value!r}")
    return float(value)


def _check_entry(entry: object, folder: Path, texts: dict, prompts: dict) -> ExternalClip:
    if not isinstance(entry, dict):
        raise ValueError("an entry must be an object")
    missing = [f for f in ENTRY_FIELDS if not entry.get(f)]
    unknown = sorted(set(entry) - set(ENTRY_FIELDS) - set(OPTIONAL_FIELDS))
    if missing or unknown:
        raise ValueError(f"missing field(s) {missing}" if missing else f"unknown field(s) {unknown}")
    label = check_external_label(entry["config"])
    rtf, latency = _optional_number(entry, "rtf"), _optional_number(entry, "latency_s")
    if entry["text_id"] not in texts:
        raise ValueError(f"text id {entry['text_id']!r} is not in assets/texts/sentences.json")
    if entry["prompt_id"] not in prompts:
        raise ValueError(f"prompt id {entry['prompt_id']!r} is not in assets/prompts/manifest.json")
    path = (folder / str(entry["file"])).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"file {entry['file']!r} is outside the folder")
    if not path.is_file():
        raise ValueError(f"file {entry['file']!r} not found")
    try:
        info = sf.info(str(path))
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ValueError(f"file {entry['file']!r} is not readable audio ({err})") from None
    if info.channels != 1:
        raise ValueError(f"file {entry['file']!r} has {info.channels} channels; clips must be mono")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"file {entry['file']!r} is at {rate} Hz; use {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    seconds = audio.shape[0] / rate
    if not MIN_CLIP_SECONDS <= seconds <= MAX_CLIP_SECONDS:
        raise ValueError(
            f"file {entry['file']!r} lasts {seconds:.2f} s; clips must last {MIN_CLIP_SECONDS}-{MAX_CLIP_SECONDS} s"
        )
    if not np.isfinite(audio).all() or float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise ValueError(f"file {entry['file']!r} is silent or holds non-finite samples")
    return ExternalClip(
        config=label,
        text_id=str(entry["text_id"]),
        prompt_id=str(entry["prompt_id"]),
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        sample_rate=int(rate),
        n_samples=int(audio.shape[0]),
        rtf=rtf,
        latency_s=latency,
    )


def validate_folder(
    folder: str | Path, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]
) -> ExternalFolder:
    """Every entry of ``folder/manifest.json`` checked; :class:`ExternalClipsError` lists all problems."""
    folder = Path(folder)
    doc = read_manifest(folder)
    clips, problems, seen = [], [], set()
    for number, entry in enumerate(doc["clips"], start=1):
        try:
            clip = _check_entry(entry, folder, texts, prompts)
        except ValueError as err:
            problems.append(f"clip {number}: {err}")
            continue
        if clip.stimulus in seen:
            problems.append(f"clip {number}: a second clip of {clip.config} for {clip.text_id} / {clip.prompt_id}")
            continue
        seen.add(clip.stimulus)
        clips.append(clip)
    if problems:
        shown = problems[:MAX_PROBLEMS_LISTED]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        raise ExternalClipsError(f"{folder / MANIFEST_NAME}: " + "; ".join(shown) + more)
    return ExternalFolder(folder.resolve(), str(doc.get("system", "")), tuple(clips))


def external_key(clip: ExternalClip) -> str:
    """Content key of an imported clip in the bank (its bytes and what it claims to be)."""
    doc = {
        "external_key_version": EXTERNAL_KEY_VERSION,
        "config": clip.config,
        "text_id": clip.text_id,
        "prompt_id": clip.prompt_id,
        "sha256": clip.sha256,
        "sample_rate": SAMPLE_RATE,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_at_bank_rate(clip: ExternalClip) -> np.ndarray:
    """The clip's audio (N,) float32 at the bank's 24 kHz (soxr resampling when it is not)."""
    audio, rate = sf.read(str(clip.path), dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="VHQ").astype(np.float32)
    return audio


def import_folder(
    external: ExternalFolder, bank: ClipBank, labels: Sequence[str] | None = None
) -> dict[tuple[str, str, str], str]:
    """Put the clips (of ``labels``, default all) into ``bank``; {(text id, prompt id, label): key}.

    Clips already in the bank (same bytes, same claims) are not imported again.
    """
    keys = {}
    for clip in external.clips:
        if labels is not None and clip.config not in labels:
            continue
        key = external_key(clip)
        if bank.get(key) is None:
            meta = {
                "source": "external",
                "system": external.system,
                "config": clip.config,
                "text_id": clip.text_id,
                "prompt_id": clip.prompt_id,
                "file": str(clip.path.relative_to(external.folder)),
                "file_sha256": clip.sha256,
                "original_sample_rate": clip.sample_rate,
                "rtf": clip.rtf,
                "latency_s": clip.latency_s,
                "dtype_ran": EXTERNAL_RAN,
                "backend": EXTERNAL_RAN,
                "llm_backend": EXTERNAL_RAN,
                "options": {"seed": 0},
            }
            bank.put_audio(key, load_at_bank_rate(clip), SAMPLE_RATE, meta)
        keys[clip.stimulus] = key
    return keys


def summary_lines(external: ExternalFolder) -> list[str]:
    """Per configuration: clips, stimuli, duration range, sample rates, median RTF/latency."""
    lines = [f"{external.folder} · {external.system or 'no system description'}"]
    for label in external.labels:
        mine = [c for c in external.clips if c.config == label]
        rates = sorted({c.sample_rate for c in mine})
        durations = [c.duration_s for c in mine]
        rtfs = [c.rtf for c in mine if c.rtf is not None]
        lat = [c.latency_s for c in mine if c.latency_s is not None]
        line = (
            f"{label}: {len(mine)} clips, {min(durations):.1f}-{max(durations):.1f} s, "
            f"{'/'.join(str(r) for r in rates)} Hz"
        )
        if rtfs:
            line += f", median RTF {float(np.median(rtfs)):.3f}"
        if lat:
            line += f", median latency {float(np.median(lat)):.3f} s"
        lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.serving.external", description="Validate a folder of external clips.")
    parser.add_argument("folder", type=Path, help=f"folder with {MANIFEST_NAME} and the audio files")
    args = parser.parse_args(argv)
    try:
        external = validate_folder(args.folder, load_texts(), load_prompts())
    except ExternalClipsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    print("\n".join(summary_lines(external)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
