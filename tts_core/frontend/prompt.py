"""PromptFeatures: everything CosyVoice2 needs from a voice prompt, as plain tensors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from tts_core.constants import N_MELS, SPEAKER_EMBEDDING_DIM, TOKEN_MEL_RATIO


def _as_1d(name: str, value: object, dtype: torch.dtype) -> torch.Tensor:
    """A (N,) CPU tensor of ``dtype`` from a list / array / tensor of shape (N,) or (1, N)."""
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if t.numel() == 0:
        return torch.zeros(0, dtype=dtype)
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (or (1, N)), got shape {tuple(t.shape)}")
    if dtype == torch.long and (t.is_floating_point() or t.is_complex()):
        raise ValueError(f"{name} must hold integer token ids, got {t.dtype}")
    return t.detach().to("cpu", dtype).contiguous()


@dataclass(frozen=True)
class PromptFeatures:
    """Features of one voice prompt (all CPU tensors).

    text_tokens:   (Lt,) int64  Qwen2 ids of the prompt transcript; empty -> cross-lingual mode
    speech_tokens: (Ls,) int64  prompt speech tokens at 25 Hz, values in [0, 6561)
    mel:           (2*Ls, 80) float32  prompt mel at 50 Hz (natural log, 24 kHz analysis)
    embedding:     (192,) float32  campplus speaker x-vector

    Build it with :meth:`Pipeline.prepare_prompt` from audio, or with :meth:`from_arrays`.
    """

    text_tokens: torch.Tensor
    speech_tokens: torch.Tensor
    mel: torch.Tensor
    embedding: torch.Tensor
    transcript: str | None = None  # the prompt transcript, when known (display only)

    @classmethod
    def from_arrays(
        cls,
        text_tokens: object,
        speech_tokens: object,
        mel: object,
        embedding: object,
        transcript: str | None = None,
    ) -> PromptFeatures:
        """Build from numpy arrays / tensors / lists, with or without a leading batch axis of 1.

        mel may be (T, 80) or (1, T, 80). As the official frontend does for 24 kHz models, the
        speech tokens and mel are cut to a common length: ``L = min(T // 2, Ls)`` tokens and
        ``2 * L`` frames.
        """
        text = _as_1d("text_tokens", text_tokens if text_tokens is not None else [], torch.long)
        speech = _as_1d("speech_tokens", speech_tokens, torch.long)
        m = torch.as_tensor(np.asarray(mel) if not isinstance(mel, torch.Tensor) else mel)
        if m.dim() == 3 and m.shape[0] == 1:
            m = m[0]
        if m.dim() != 2 or m.shape[1] != N_MELS:
            raise ValueError(f"mel must be (T, {N_MELS}) or (1, T, {N_MELS}), got {tuple(m.shape)}")
        emb = _as_1d("embedding", embedding, torch.float32)
        if emb.numel() != SPEAKER_EMBEDDING_DIM:
            raise ValueError(f"embedding must have {SPEAKER_EMBEDDING_DIM} values, got {emb.numel()}")
        n_tokens = min(m.shape[0] // TOKEN_MEL_RATIO, speech.numel())
        if n_tokens < 1:
            raise ValueError("the prompt needs at least one speech token and two mel frames")
        if speech.min() < 0:
            raise ValueError("speech_tokens must be non-negative")
        m = m[: n_tokens * TOKEN_MEL_RATIO].detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(m).all() or not torch.isfinite(emb).all():
            raise ValueError("mel and embedding must be finite")
        return cls(text, speech[:n_tokens].clone(), m, emb, transcript)

    @property
    def mode(self) -> str:
        """``zero_shot`` (transcript tokens given) or ``cross_lingual`` (no transcript)."""
        return "zero_shot" if self.text_tokens.numel() > 0 else "cross_lingual"

    def digest(self) -> str:
        """Content hash (sha256 hex) of every feature, for caches keyed by prompt."""
        h = hashlib.sha256()
        for t in (self.text_tokens, self.speech_tokens, self.mel, self.embedding):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()
