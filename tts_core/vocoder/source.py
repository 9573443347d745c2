"""The harmonic excitation ("source") of the HiFT vocoder: f0 in Hz -> one excitation sample stream.

CosyVoice2 runs at 24 kHz, so the official code uses its ``SineGen2`` flavour of the
neural-source-filter excitation. Per output sample, with H = nb_harmonics + 1 sines:

1. f0 per mel frame is repeated to sample rate (nearest, ``samples_per_frame`` = 480 each);
2. harmonic h (1..H) advances by ``(h * f0 / sample_rate) mod 1`` turns per sample; random initial
   phases are added to the first sample (none for the fundamental);
3. those per-sample increments are linearly resampled down to frame rate, accumulated over frames,
   scaled back up and linearly resampled to sample rate: the phase in radians;
4. ``sines = sine_amp * sin(phase)``, zeroed where the sample is unvoiced (f0 <= threshold), plus
   Gaussian noise (std ``noise_std`` where voiced, ``sine_amp / 3`` where unvoiced);
5. the H sines are merged by ``tanh(Linear(H -> 1))``.

The random numbers are passed in explicitly (:meth:`HarmonicSource.forward`) or drawn from a
``torch.Generator`` (:meth:`HarmonicSource.draw`), so the same seed gives the same audio and parity
tests can inject the official draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class HarmonicSource(nn.Module):
    """f0 (B, T) Hz -> excitation (B, 1, T * samples_per_frame); parameters ``l_linear`` as in hift.pt."""

    def __init__(
        self,
        num_sines: int,
        sample_rate: int,
        samples_per_frame: int,
        sine_amp: float,
        noise_std: float,
        voiced_threshold: float,
    ) -> None:
        super().__init__()
        self.num_sines = num_sines  # fundamental + overtones
        self.sample_rate = sample_rate  # Hz
        self.samples_per_frame = samples_per_frame  # output samples per f0 frame
        self.sine_amp = sine_amp
        self.noise_std = noise_std  # additive noise std in voiced samples
        self.voiced_threshold = voiced_threshold  # Hz; samples with f0 above it are voiced
        # Merges the sines into one excitation channel (the name is the checkpoint's).
        self.l_linear = nn.Linear(num_sines, 1)

    def f0_per_sample(self, f0: Tensor) -> Tensor:
        """(B, T) Hz per frame -> (B, T * samples_per_frame, 1) Hz per sample (each frame repeated)."""
        _check_f0(f0)
        return f0.repeat_interleave(self.samples_per_frame, dim=1).unsqueeze(-1)

    def voiced(self, f0_samples: Tensor) -> Tensor:
        """(B, L, 1) Hz -> (B, L, 1) float32, 1.0 where the sample counts as voiced."""
        return (f0_samples > self.voiced_threshold).to(torch.float32)

    def noise_scale(self, voiced: Tensor) -> Tensor:
        """(B, L, 1) voiced mask -> (B, L, 1) std of the additive noise per sample."""
        # NOTE: evaluated as the official expression is, so injected reference noise matches exactly.
        return voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3

    def draw(self, f0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Random inputs of :meth:`forward` for f0 (B, T), all taken from ``generator``.

        Returns ``initial_phase`` (B, H) in turns, column 0 (the fundamental) zero, and the additive
        ``noise`` (B, T * samples_per_frame, H), already scaled by :meth:`noise_scale`.
        ``generator`` must live on f0's device; None uses torch's global generator.
        """
        f0_samples = self.f0_per_sample(f0)
        batch, length = f0_samples.shape[:2]
        initial_phase = torch.rand(batch, self.num_sines, generator=generator, device=f0.device)
        initial_phase[:, 0] = 0.0
        draw = torch.randn(batch, length, self.num_sines, generator=generator, device=f0.device)
        return initial_phase, self.noise_scale(self.voiced(f0_samples)) * draw

    def sines(self, f0_samples: Tensor, initial_phase: Tensor) -> Tensor:
        """(B, L, 1) Hz, (B or 1, H) turns -> (B, L, H) unit sines of the H harmonics (no amplitude)."""
        harmonics = torch.arange(1, self.num_sines + 1, device=f0_samples.device, dtype=f0_samples.dtype)
        # Turns per sample of each harmonic; the integer part is dropped (a full turn changes nothing).
        turns = (f0_samples * harmonics / self.sample_rate) % 1
        turns[:, 0, :] = turns[:, 0, :] + initial_phase
        frames = f0_samples.shape[1] // self.samples_per_frame
        # NOTE: the linear downsampling reads the two samples at each frame's centre (positions
        # 480 i + 239 and 480 i + 240); with samples_per_frame >= 3 it never reads sample 0, so the
        # initial phases do not change the output of this (official) scheme. Kept for fidelity.
        per_frame = F.interpolate(turns.transpose(1, 2), size=frames, mode="linear")
        # NOTE: the scaling is done as the official chain of fp32 multiplications (x 2, x pi, then
        # x samples_per_frame after the cumsum); one fused constant rounds differently and the error
        # grows with the accumulated phase (tens of thousands of radians after a few seconds):
        # fusing them gave 2e-4 source error on the reference instead of 3e-8.
        phase = torch.cumsum(per_frame, dim=2) * 2 * math.pi
        phase = F.interpolate(
            phase * self.samples_per_frame, scale_factor=self.samples_per_frame, mode="linear"
        )
        return torch.sin(phase.transpose(1, 2))

    def forward(self, f0: Tensor, initial_phase: Tensor, noise: Tensor) -> Tensor:
        """Excitation from explicit random inputs.

        f0 (B, T) Hz per frame; initial_phase (B or 1, H) turns (column 0 should be 0);
        noise (B or 1, T * samples_per_frame, H), the additive noise already scaled per sample.
        Returns (B, 1, T * samples_per_frame).
        """
        f0_samples = self.f0_per_sample(f0)
        batch, length = f0_samples.shape[:2]
        if initial_phase.ndim != 2 or initial_phase.shape[1] != self.num_sines:
            raise ValueError(f"initial_phase must be (B, {self.num_sines}), got {tuple(initial_phase.shape)}")
        if noise.ndim != 3 or noise.shape[1:] != (length, self.num_sines):
            raise ValueError(f"noise must be (B, {length}, {self.num_sines}), got {tuple(noise.shape)}")
        if initial_phase.shape[0] not in (1, batch) or noise.shape[0] not in (1, batch):
            raise ValueError(f"initial_phase / noise batch must be 1 or {batch}")
        sine_waves = self.sines(f0_samples, initial_phase) * self.sine_amp
        sine_waves = sine_waves * self.voiced(f0_samples) + noise
        return torch.tanh(self.l_linear(sine_waves)).transpose(1, 2)


def _check_f0(f0: Tensor) -> None:
    if f0.ndim != 2:
        raise ValueError(f"f0 must be (B, T) Hz per frame, got shape {tuple(f0.shape)}")
    if f0.dtype != torch.float32:
        raise ValueError(f"f0 must be float32 (HiFT always runs in float32), got {f0.dtype}")
