"""Typed results of the screen: every measure says what it is, which model ran, or why none did."""

from __future__ import annotations

from dataclasses import dataclass, field

# Flag codes (FlagCheck.code), in the order the screen checks them.
FLAG_NON_FINITE = "non_finite"
FLAG_SILENT = "silent"
FLAG_CLIPPED = "clipped"
FLAG_DURATION = "implausible_duration"
FLAG_INTERNAL_SILENCE = "long_internal_silence"
FLAG_REPEATED_TOKENS = "repeated_tokens"
FLAG_ERROR_RATE = "high_error_rate"
FLAG_CODES = (
    FLAG_NON_FINITE,
    FLAG_SILENT,
    FLAG_CLIPPED,
    FLAG_DURATION,
    FLAG_INTERNAL_SILENCE,
    FLAG_REPEATED_TOKENS,
    FLAG_ERROR_RATE,
)


@dataclass(frozen=True)
class MeasureInfo:
    """What a measure is and what computed it; ``available`` False with the ``reason`` when nothing did."""

    name: str  # e.g. "dnsmos", "similarity_campplus", "asr_pocketsphinx"
    description: str  # one line for a reader
    model: str = ""  # the model that ran, e.g. "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx"
    version: str = ""  # package (and model) version
    available: bool = True
    reason: str = ""  # why it is unavailable, or a caveat on what it measures

    def unavailable(self, reason: str) -> MeasureInfo:
        """The same measure, marked as not computed because of ``reason``."""
        return MeasureInfo(self.name, self.description, self.model, self.version, False, reason)


@dataclass(frozen=True)
class QualityScore:
    """DNSMOS predicted MOS on a 1-5 scale (None when unavailable)."""

    info: MeasureInfo
    ovrl: float | None = None  # P.835 overall quality
    sig: float | None = None  # P.835 speech signal quality
    bak: float | None = None  # P.835 background noise (higher = less noise)
    p808: float | None = None  # P.808 overall MOS


@dataclass(frozen=True)
class Similarity:
    """Cosine between the prompt's and the clip's speaker embeddings (None when unavailable)."""

    info: MeasureInfo
    cosine: float | None = None


@dataclass(frozen=True)
class Intelligibility:
    """ASR transcript and its error rate against the normalised input text."""

    info: MeasureInfo
    metric: str = ""  # "wer" (English) | "cer" (Chinese)
    error_rate: float | None = None  # (S + D + I) / reference length; can exceed 1
    transcript: str = ""  # what the ASR heard (as it wrote it)
    reference: str = ""  # the normalised input text the transcript was scored against


@dataclass(frozen=True)
class FlagCheck:
    """One failure check: its measured value against its limit; ``fired`` None when not checkable."""

    code: str  # one of FLAG_CODES
    fired: bool | None
    value: float | None  # what was measured (unit in ``detail``)
    limit: str  # the rule, e.g. "RMS >= -45 dBFS"
    detail: str  # a sentence for a reader: what was found, or why it could not be checked


@dataclass(frozen=True)
class ScreenResult:
    """Everything the screen found about one clip."""

    duration_s: float
    quality: QualityScore
    similarity: tuple[Similarity, ...]  # one per speaker encoder (CAM++, resemblyzer)
    intelligibility: Intelligibility
    checks: tuple[FlagCheck, ...]
    seconds: float = 0.0  # wall time of the screen itself
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flags(self) -> tuple[FlagCheck, ...]:
        """The checks that fired."""
        return tuple(c for c in self.checks if c.fired)

    @property
    def flagged(self) -> bool:
        return any(c.fired for c in self.checks)

    def values(self) -> dict[str, float | None]:
        """The numeric measures by column name (for tables): dnsmos_*, sim_<encoder>, error_rate."""
        out: dict[str, float | None] = {
            "dnsmos_ovrl": self.quality.ovrl,
            "dnsmos_sig": self.quality.sig,
            "dnsmos_bak": self.quality.bak,
            "dnsmos_p808": self.quality.p808,
        }
        for sim in self.similarity:
            out[sim.info.name] = sim.cosine
        out["error_rate"] = self.intelligibility.error_rate
        return out

    def measures(self) -> tuple[MeasureInfo, ...]:
        """What ran (or why not) for every measure of this result."""
        return (self.quality.info, *(s.info for s in self.similarity), self.intelligibility.info)
