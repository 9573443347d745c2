"""The bank of pre-generated clips: every stimulus of a test plan synthesised once, kept on disk.

Every stimulus is synthesised once into ``root/<k[:2]>/<k>.wav`` plus a JSON sidecar, where ``k``
(:func:`clip_key`) is the sha256 of the model hash, text, prompt id and digest, and the full
synthesis options (seed included). A restart finds the clips and generates nothing; a crash never
leaves a half-written clip under its key (files are written under temporary names and renamed).

* :func:`stimulus_options`: the synthesis options of one configuration of a plan;
* :func:`stimulus_keys`: the key of every stimulus of a plan (no model needed);
* :func:`build_bank`: synthesise what is missing.

Every sidecar records the clip's length and its loudness match (eval/serving/loudness.py: the gain that
brings it to the stimulus loudness, measured before and after); the WAV itself stays as
synthesised, so objective measures read it unchanged and :meth:`Clip.stimulus_audio` is what a
listener hears.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from eval.serving import loudness
from eval.serving.loudness import LoudnessMatch
from tts_core.config_id import ConfigId

from .trials import PromptAsset, TestPlan, TextItem

if TYPE_CHECKING:  # the core is heavy to import; only type checkers need it here
    from tts_core import GeneratedTokens, PromptFeatures, SynthesisOptions, SynthesisResult

BANK_VERSION = 1  # bump when clip rendering changes in a way the key does not capture

Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass(frozen=True)
class Clip:
    key: str
    wav_path: Path
    meta: dict = field(hash=False, compare=False)  # the sidecar: text, prompt, options, timings, ...

    @property
    def loudness(self) -> LoudnessMatch:
        """How this clip is brought to the stimulus loudness (sidecar ``loudness``)."""
        return LoudnessMatch.from_meta(self.meta["loudness"])

    def read(self) -> tuple[np.ndarray, int]:
        """The audio as synthesised (N,) float32 and its rate: what objective measures use."""
        audio, rate = sf.read(self.wav_path, dtype="float32", always_2d=False)
        return audio, int(rate)

    def stimulus_audio(self) -> tuple[np.ndarray, int]:
        """The audio a listener hears (N,) float32: loudness-matched by the sidecar's gain."""
        audio, rate = self.read()
        return (audio * np.float32(self.loudness.gain)).astype(np.float32), rate


def clip_key(
    model_hash: str, text: str, prompt_id: str, prompt_digest: str, options: SynthesisOptions
) -> str:
    """sha256 over everything that determines a clip's audio (the options include the seed)."""
    doc = {
        "bank_version": BANK_VERSION,
        "model_hash": model_hash,
        "text": text,
        "prompt_id": prompt_id,
        "prompt_digest": prompt_digest,
        "options": asdict(options),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ClipBank:
    """Content-addressed clips on disk: ``root/ab/abcdef....wav`` + ``.json``; the sidecar is written last."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def get(self, key: str) -> Clip | None:
        wav, side = self._paths(key)
        if not (wav.is_file() and side.is_file()):
            return None
        meta = json.loads(side.read_text(encoding="utf-8"))
        if "loudness" not in meta or "n_samples" not in meta:
            meta = self._backfill(key, wav, side, meta)
        return Clip(key, wav, meta)

    def _backfill(self, key: str, wav: Path, side: Path, meta: dict) -> dict:
        """Add the loudness and length to a sidecar written before they were recorded."""
        audio, rate = sf.read(wav, dtype="float32", always_2d=False)
        meta = {**meta, **_measured(audio, rate)}
        _atomic_write(side, lambda f: f.write(json.dumps(meta, ensure_ascii=False, indent=1).encode()))
        return meta

    def put_audio(self, key: str, audio: np.ndarray, sample_rate: int, meta: dict) -> Clip:
        """Store mono ``audio`` (N,) as 16-bit PCM WAV with ``meta``, its length and its loudness match."""
        wav, side = self._paths(key)
        wav.parent.mkdir(parents=True, exist_ok=True)
        pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
        # Write to temporary names and rename: a crash never leaves a half clip under its key.
        _atomic_write(wav, lambda f: sf.write(f, pcm, sample_rate, subtype="PCM_16", format="WAV"))
        stored, _ = sf.read(wav, dtype="float32", always_2d=False)  # measured as it will be read
        sidecar = {**meta, "key": key, **_measured(stored, sample_rate)}
        _atomic_write(side, lambda f: f.write(json.dumps(sidecar, ensure_ascii=False, indent=1).encode()))
        return Clip(key, wav, sidecar)

    def put(self, key: str, result: SynthesisResult, meta: dict) -> Clip:
        """Store a synthesis result (16-bit PCM WAV) with ``meta`` plus how it was made."""
        sidecar = {
            **meta,
            "options": asdict(result.options),
            "dtype_ran": result.dtype_ran,
            "backend": result.backend,
            "llm_backend": result.llm_backend,
            "device": result.device,
            "duration_s": round(result.duration, 3),
            "timings": {
                "llm": result.timings.llm,
                "flow": result.timings.flow,
                "vocoder": result.timings.vocoder,
            },
            "rtf": result.rtf,
            "warnings": list(result.warnings),
            # The LLM's tokens per sentence segment: the screen looks for loops in them.
            "speech_tokens": [seg.tolist() for seg in result.speech_tokens],
        }
        return self.put_audio(key, result.audio, result.sample_rate, sidecar)


def _measured(audio: np.ndarray, sample_rate: int) -> dict:
    """Sidecar fields every clip has: its length in samples and its loudness match."""
    _, record = loudness.match(audio, sample_rate)
    return {"n_samples": int(audio.shape[0]), "sample_rate": int(sample_rate), "loudness": record.to_meta()}


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stimulus_options(plan: TestPlan, config: ConfigId) -> SynthesisOptions:
    """The synthesis options of one configuration of ``plan`` (the plan's seed, defaults otherwise)."""
    from tts_core.options import SynthesisOptions  # torch: only when clips are made

    return SynthesisOptions(seed=plan.seed).with_config(config)


def stimulus_keys(
    plan: TestPlan, model_hash: str, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]
) -> dict[tuple[str, str, str], str]:
    """{(text id, prompt id, config label): clip key} of every clip ``plan`` renders (no model needed)."""
    keys = {}
    digests = {p: prompts[p].digest() for p in plan.prompt_ids if p in prompts}
    for text_id, prompt_id in plan.stimuli(texts, prompts):
        for config in plan.rendered_configs:
            options = stimulus_options(plan, config)
            key = clip_key(model_hash, texts[text_id].text, prompt_id, digests[prompt_id], options)
            keys[(text_id, prompt_id, config.label)] = key
    return keys


def build_bank(
    plan: TestPlan,
    pipeline,
    bank: ClipBank,
    texts: dict[str, TextItem],
    prompts: dict[str, PromptAsset],
    progress: Progress | None = None,
) -> dict[tuple[str, str, str], Clip]:
    """Synthesise every missing stimulus of ``plan``; returns {(text id, prompt id, config label): clip}.

    Configurations with the same dtype share one LLM run (same seed), rendered with each flow
    setting by ``tokens_to_audio``, so pairs that differ only in flow steps differ only there.
    """
    model_hash = pipeline.info.model_hash
    keys = stimulus_keys(plan, model_hash, texts, prompts)
    total = len(keys)
    clips: dict[tuple[str, str, str], Clip] = {}
    features: dict[str, PromptFeatures] = {}
    tokens: dict[tuple[str, str, str], GeneratedTokens] = {}  # (text, prompt, dtype) -> LLM output
    for done, ((text_id, prompt_id, label), key) in enumerate(keys.items(), start=1):
        clip = bank.get(key)
        if clip is None:
            config = next(c for c in plan.rendered_configs if c.label == label)
            options = stimulus_options(plan, config)
            text, asset = texts[text_id].text, prompts[prompt_id]
            if prompt_id not in features:
                audio, rate = asset.load()
                features[prompt_id] = pipeline.prepare_prompt(audio, rate, asset.transcript)
            prompt = features[prompt_id]
            token_key = (text_id, prompt_id, config.dtype)
            if token_key not in tokens:
                tokens[token_key] = pipeline.generate_tokens(text, prompt, options)
            result = pipeline.tokens_to_audio(tokens[token_key], prompt, options)
            meta = {
                "text_id": text_id,
                "text": text,
                "prompt_id": prompt_id,
                "prompt_digest": asset.digest(),
                "config": label,
                "model_id": pipeline.info.model_id,
                "model_hash": model_hash,
            }
            clip = bank.put(key, result, meta)
        clips[(text_id, prompt_id, label)] = clip
        if progress is not None:
            progress(done, total, f"{text_id} / {prompt_id} / {label}")
    return clips
