"""Intelligibility: an ASR transcript of the clip and its WER (English) or CER (Chinese).

* :class:`PocketsphinxAsr`: CMU pocketsphinx with the US-English acoustic model, language model
  and dictionary that ship in the ``pocketsphinx`` wheel (offline, CPU, English only). It is a
  weak recogniser next to Whisper: read its WER as a breakdown detector, not an absolute number.
* :class:`WhisperAsr`: a local Whisper checkpoint directory (``--asr-model DIR``) through
  transformers, English and Chinese; never downloads (``local_files_only``). The field's standard
  is Whisper large-v3 for English (seed-tts-eval uses Paraformer for Chinese, which is not here).

:func:`measure_intelligibility` picks Whisper when it was loaded, else pocketsphinx for English, and
otherwise says why nothing ran.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from .options import ASR_SAMPLE_RATE
from .results import Intelligibility, MeasureInfo
from .text import METRIC_BY_LANGUAGE, error_rate, scoring_text

INT16_SCALE = 32767  # pocketsphinx takes 16-bit PCM
WHISPER_WINDOW_S = 30  # Whisper hears at most 30 s at a time; longer clips are cut into windows
MIN_ASR_SECONDS = 0.1
NO_CHINESE_ASR = "no offline ASR for Chinese; pass --asr-model DIR (a local Whisper model directory)"


class Recogniser(Protocol):
    info: MeasureInfo
    languages: tuple[str, ...]

    def transcribe(self, wav16k: np.ndarray, language: str) -> str:
        """wav16k: (N,) float32 in [-1, 1] at 16 kHz. Returns the transcript as the ASR writes it."""
        ...


def _new_decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")


def _decode(decoder, pcm: bytes) -> str:
    """Transcript of 16 kHz 16-bit mono PCM, decoded as one utterance."""
    # NOTE: the feature front end adapts its cepstral mean across utterances, which makes a
    # clip's transcript depend on the clips decoded before it; a fresh front end per clip does not.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return "" if hyp is None else hyp.hypstr


# The decoder of an ASR worker process (set by its initializer; never used in the parent process).
_worker_decoder = None


def _worker_start() -> None:
    global _worker_decoder
    _worker_decoder = _new_decoder()


def _worker_decode(pcm: bytes) -> str:
    return _decode(_worker_decoder, pcm)


class PocketsphinxAsr:
    """pocketsphinx 5 with its bundled en-us models. Not thread-safe (the screener serialises calls).

    in_worker: decode in a separate process. NOTE: pocketsphinx holds the GIL for a whole decode
    (1-2 s per 10 s clip), which stalls every other thread of the process: in the app that is the
    next synthesis and the UI. Feeding it in small pieces would release the GIL but switches it to
    live cepstral normalisation, which transcribes our prompt clips worse; a worker process keeps
    the whole-utterance decoding and leaves the app's threads alone.
    """

    languages = ("en",)

    def __init__(self, in_worker: bool = False) -> None:
        self._decoder = None
        self._pool = None
        if in_worker:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                1, multiprocessing.get_context("spawn"), initializer=_worker_start
            )
            self._pool.submit(_worker_decode, bytes(2 * ASR_SAMPLE_RATE // 10)).result()  # start it now
        else:
            self._decoder = _new_decoder()
        self.info = MeasureInfo(
            "asr_pocketsphinx",
            "pocketsphinx transcript, WER against the normalised input text",
            model="CMU Sphinx en-us acoustic model + en-us.lm.bin + cmudict-en-us (bundled)",
            version=f"pocketsphinx {metadata.version('pocketsphinx')}",
        )

    def transcribe(self, wav16k: np.ndarray, language: str) -> str:
        pcm = (np.clip(wav16k, -1.0, 1.0) * INT16_SCALE).astype(np.int16).tobytes()
        if self._pool is not None:
            return self._pool.submit(_worker_decode, pcm).result()
        return _decode(self._decoder, pcm)


class WhisperAsr:
    """A Whisper checkpoint directory run by transformers (greedy decoding, one 30 s window at a time)."""

    languages = ("en", "zh")

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Whisper model directory (no config.json)")
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self._device = torch.device(device)
        dtype = torch.float16 if self._device.type == "cuda" else torch.float32
        self._processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
        self._model = (
            WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
            .to(self._device)
            .eval()
        )
        self._dtype = dtype
        self.info = MeasureInfo(
            "asr_whisper",
            "Whisper transcript, WER (English) / CER (Chinese) against the normalised input text",
            model=f"Whisper from {model_dir} ({self._model.config.num_hidden_layers} layers, "
            f"d_model {self._model.config.d_model})",
            version=f"transformers {metadata.version('transformers')}",
        )

    def transcribe(self, wav16k: np.ndarray, language: str) -> str:
        import torch

        window = WHISPER_WINDOW_S * ASR_SAMPLE_RATE
        pieces = []
        for start in range(0, max(1, wav16k.size), window):
            chunk = wav16k[start : start + window]
            feats = self._processor(chunk, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                ids = self._model.generate(
                    feats.to(self._device, self._dtype), language=language, task="transcribe"
                )
            pieces.append(self._processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        return " ".join(p for p in pieces if p)


def choose_recogniser(recognisers: tuple[Recogniser, ...], language: str) -> Recogniser | None:
    """Whisper when loaded (the better recogniser), else the first one that knows ``language``."""
    able = [r for r in recognisers if language in r.languages]
    return next((r for r in able if isinstance(r, WhisperAsr)), able[0] if able else None)


def unavailable_reason(recognisers: tuple[Recogniser, ...], language: str) -> str:
    if language == "zh":
        return NO_CHINESE_ASR
    if not recognisers:
        return "no ASR is loaded (pocketsphinx missing? pip install pocketsphinx==5.1.1)"
    return f"no loaded ASR handles language {language!r}"


ASR_INFO = MeasureInfo("asr", "ASR transcript and WER/CER against the normalised input text")


def measure_intelligibility(
    recognisers: tuple[Recogniser, ...], wav16k: np.ndarray, text: str, language: str
) -> Intelligibility:
    """Transcribe (N,) 16 kHz audio with the chosen ASR and score it against ``text``."""
    metric = METRIC_BY_LANGUAGE[language]
    reference = scoring_text(text, language)
    asr = choose_recogniser(recognisers, language)
    if asr is None:
        return Intelligibility(ASR_INFO.unavailable(unavailable_reason(recognisers, language)), metric)
    if not reference:
        return Intelligibility(asr.info.unavailable("the text has no words to score"), metric)
    if wav16k.size < MIN_ASR_SECONDS * ASR_SAMPLE_RATE:
        return Intelligibility(asr.info.unavailable(f"the clip is shorter than {MIN_ASR_SECONDS} s"), metric)
    transcript = asr.transcribe(wav16k, language)
    rate = error_rate(reference, scoring_text(transcript, language))
    return Intelligibility(asr.info, metric, rate, transcript, reference)
