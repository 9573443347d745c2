"""Device and dtype resolution: where things run, and which dtypes can run there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import torch

from tts_core.options import torch_dtype


@dataclass(frozen=True)
class DeviceInfo:
    torch: torch.device
    label: str  # "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"

    @property
    def is_cuda(self) -> bool:
        return self.torch.type == "cuda"

    @property
    def stop_check_every(self) -> int:
        # On a GPU every host read of a token stalls the launch queue; check for the stop
        # token every few steps there (the extra steps are discarded). On the CPU a check is free.
        return 8 if self.is_cuda else 1


def resolve_device(name: str | None) -> DeviceInfo:
    """'cpu', 'cuda', 'cuda:N' or None (CUDA when available) -> DeviceInfo; ValueError if unusable."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested, but CUDA is not available on this machine")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA devices exist"
            )
        dev = torch.device("cuda", index)
        # float32 means IEEE float32 here: TF32 would blur the fp32 baseline we compare against.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return DeviceInfo(dev, f"cuda:{index} ({torch.cuda.get_device_name(index)})")
    if dev.type != "cpu":
        raise ValueError(f"device type {dev.type!r} is not supported (use cpu or cuda)")
    return DeviceInfo(dev, "cpu")


@contextmanager
def tf32_convolutions(device: DeviceInfo) -> Iterator[None]:
    """cuDNN convolutions in TF32 inside the block on CUDA (restored after); no effect elsewhere.

    For the HiFT vocoder only: TF32 convolutions are torch's default and so what the official
    vocoder runs on Ampere and later GPUs, the vocoder is float32 and shared by every configuration
    an A/B test compares, and it is faster (BENCHMARKS.md, H100, 10 s of audio: 16.1 -> 12.0 ms with
    the Triton Snake, waveform within 5.2e-5 of IEEE float32). LLM and flow keep IEEE float32.
    """
    if not device.is_cuda:
        yield
        return
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


@cache
def _dtype_runs(device: torch.device, name: str) -> bool:
    dtype = torch_dtype(name)
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return False
    try:
        a = torch.ones(8, 8, dtype=dtype, device=device)
        ok = bool(torch.isfinite((a @ a).float()).all())
        torch.nn.functional.scaled_dot_product_attention(a[None, None], a[None, None], a[None, None])
        return ok
    except RuntimeError:
        return False


def resolve_dtype(device: DeviceInfo, name: str) -> tuple[str, str | None]:
    """(dtype that will run, warning or None). Falls back to float32, never silently."""
    torch_dtype(name)  # ValueError for unknown names
    if _dtype_runs(device.torch, name):
        return name, None
    return "float32", f"{name} cannot run on {device.label}; float32 ran instead"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
