"""Load the screen's models once (:func:`load_screener`), then screen clips (:meth:`Screener.screen`).

Usage::

    screener = load_screener(ScreenOptions(), campplus=CampplusSource(Path(model_dir) / "campplus.onnx"))
    reference = screener.speaker_reference(prompt_audio, prompt_rate)      # once per voice prompt
    result = screener.screen(ClipInput(audio, 24000, "Hello there.", reference, tokens))
    result.quality.ovrl, result.similarity, result.intelligibility.error_rate, result.flags

A measure whose model cannot be loaded is not an error: its results say why it is unavailable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tts_core.frontend.audio import resample

from .asr import ASR_INFO, PocketsphinxAsr, Recogniser, WhisperAsr, measure_intelligibility
from .flags import check_error_rate, signal_checks
from .options import ASR_SAMPLE_RATE, ScreenOptions
from .quality import DNSMOS_INFO, Dnsmos
from .results import (
    FLAG_ERROR_RATE,
    FlagCheck,
    Intelligibility,
    MeasureInfo,
    QualityScore,
    ScreenResult,
    Similarity,
)
from .speaker import (
    CAMPPLUS_NAME,
    CampplusEncoder,
    ResemblyzerEncoder,
    SpeakerEncoder,
    SpeakerReference,
    make_reference,
    similarities,
    to_speaker_rate,
)
from .text import language_of

log = logging.getLogger(__name__)

# Exceptions a model loader may raise for a missing or broken package / file.
_LOAD_ERRORS = (ImportError, OSError, ValueError, RuntimeError)


@dataclass(frozen=True)
class CampplusSource:
    """Where the model's CAM++ network is, and whether it is trained."""

    path: Path
    random_weights: bool = False  # a random-weight demo/test model: the cosine measures nothing


@dataclass(frozen=True)
class ClipInput:
    """One clip to screen."""

    audio: np.ndarray  # (N,) float samples (NaN/inf allowed: they are flagged)
    sample_rate: int
    text: str  # the input text the clip should say
    reference: SpeakerReference | None = None  # the voice prompt's embeddings (None: no similarity)
    speech_tokens: Sequence[int] | None = None  # the LLM's tokens of this clip (None: no loop check)
    language: str | None = None  # "en" | "zh"; None: detected from the text


class Screener:
    """The loaded models plus the options; ``screen`` calls are serialised (one clip at a time)."""

    def __init__(
        self,
        options: ScreenOptions,
        dnsmos: Dnsmos | None,
        encoders: tuple[SpeakerEncoder, ...],
        recognisers: tuple[Recogniser, ...],
        unavailable: tuple[MeasureInfo, ...],
    ) -> None:
        self.options = options
        self._dnsmos = dnsmos
        self._encoders = encoders
        self._recognisers = recognisers
        self.unavailable = unavailable  # models that could not be loaded, each with the reason
        self._lock = threading.Lock()

    def measures(self) -> tuple[MeasureInfo, ...]:
        """What is loaded (and what is not, with the reason)."""
        loaded = [m.info for m in (self._dnsmos, *self._encoders, *self._recognisers) if m is not None]
        return (*loaded, *self.unavailable)

    def speaker_reference(self, audio: np.ndarray, sample_rate: int) -> SpeakerReference:
        """The voice prompt's embeddings; audio: (N,) float at ``sample_rate``."""
        with self._lock:
            return make_reference(self._encoders, audio, sample_rate)

    def _quality(self, audio: np.ndarray, sample_rate: int) -> QualityScore:
        if self._dnsmos is None:
            why = self._why_not("dnsmos", DNSMOS_INFO)
            return QualityScore(why)
        return self._dnsmos.score(audio, sample_rate)

    def _why_not(self, name: str, default: MeasureInfo) -> MeasureInfo:
        if not self.options.runs(name):
            return default.unavailable("switched off in the screen options")
        return next(
            (m for m in self.unavailable if m.name == default.name), default.unavailable("not loaded")
        )

    def screen(self, clip: ClipInput) -> ScreenResult:
        """Every measure and check on one clip (see :class:`ClipInput`)."""
        start = time.perf_counter()
        audio = np.asarray(clip.audio, dtype=np.float32).reshape(-1)
        language = language_of(clip.text, clip.language)
        checks = signal_checks(audio, clip.sample_rate, clip.text, language, clip.speech_tokens, self.options)
        finite = bool(checks[0].fired is False)
        with self._lock:
            if not finite:
                why = "the clip has non-finite samples"
                quality = QualityScore(DNSMOS_INFO.unavailable(why))
                sims = tuple(Similarity(e.info.unavailable(why)) for e in self._encoders)
                intel = Intelligibility(ASR_INFO.unavailable(why))
            else:
                quality = self._quality(audio, clip.sample_rate)
                sims = similarities(self._encoders, to_speaker_rate(audio, clip.sample_rate), clip.reference)
                intel = self._intelligibility(audio, clip.sample_rate, clip.text, language)
        error_check = (
            check_error_rate(intel, self.options)
            if self.options.runs("asr")
            else FlagCheck(FLAG_ERROR_RATE, None, None, "", "ASR switched off in the screen options")
        )
        return ScreenResult(
            duration_s=audio.size / clip.sample_rate,
            quality=quality,
            similarity=sims,
            intelligibility=intel,
            checks=(*checks, error_check),
            seconds=time.perf_counter() - start,
        )

    def _intelligibility(
        self, audio: np.ndarray, sample_rate: int, text: str, language: str
    ) -> Intelligibility:
        if not self.options.runs("asr"):
            return Intelligibility(ASR_INFO.unavailable("switched off in the screen options"))
        wav16k = np.clip(resample(audio, sample_rate, ASR_SAMPLE_RATE), -1.0, 1.0)
        return measure_intelligibility(self._recognisers, wav16k, text, language)


def _try_load(name: str, description: str, load, unavailable: list[MeasureInfo]):
    try:
        return load()
    except _LOAD_ERRORS as err:
        log.warning("screen: %s unavailable: %s", name, err)
        unavailable.append(
            MeasureInfo(name, description, available=False, reason=f"{type(err).__name__}: {err}")
        )
        return None


def load_screener(
    options: ScreenOptions,
    campplus: CampplusSource | None = None,
    asr_model_dir: str | Path | None = None,
    asr_device: str = "cpu",
    asr_in_worker: bool = False,
) -> Screener:
    """Load every model the options switch on. A model that cannot load is reported, not raised,
    except an explicitly requested ``asr_model_dir`` (asked for by name: its failure is the user's
    to see, as ValueError). ``asr_in_worker``: pocketsphinx decodes in a worker process (for a
    server: see :class:`~eval.screen.asr.PocketsphinxAsr`)."""
    missing: list[MeasureInfo] = []
    dnsmos = _try_load("dnsmos", DNSMOS_INFO.description, Dnsmos, missing) if options.runs("dnsmos") else None
    encoders: list[SpeakerEncoder] = []
    if options.runs("similarity"):
        if campplus is None:
            missing.append(
                MeasureInfo(
                    CAMPPLUS_NAME, "CAM++ similarity", available=False, reason="no model directory given"
                )
            )
        else:
            enc = _try_load(
                CAMPPLUS_NAME,
                "CAM++ similarity",
                lambda: CampplusEncoder(campplus.path, campplus.random_weights),
                missing,
            )
            encoders += [enc] if enc is not None else []
        enc = _try_load("sim_resemblyzer", "resemblyzer similarity", ResemblyzerEncoder, missing)
        encoders += [enc] if enc is not None else []
    recognisers: list[Recogniser] = []
    if options.runs("asr"):
        if asr_model_dir is not None:
            try:
                recognisers.append(WhisperAsr(asr_model_dir, asr_device))
            except _LOAD_ERRORS as err:
                raise ValueError(f"--asr-model {asr_model_dir}: cannot load a Whisper model: {err}") from None
        asr = _try_load(
            "asr_pocketsphinx", "pocketsphinx ASR", lambda: PocketsphinxAsr(asr_in_worker), missing
        )
        recognisers += [asr] if asr is not None else []
    return Screener(options, dnsmos, tuple(encoders), tuple(recognisers), tuple(missing))
