"""HiFT on a CUDA GPU, 10 s of mel: torch vs one-kernel Snake, IEEE float32 vs TF32 convolutions.

    python benchmarks/scripts/hift_variants.py MODEL_DIR

Median of 15 calls after 3 warm-up calls; each variant's waveform against the IEEE float32
torch-Snake one. The recorded run is benchmarks/h100-2026-11-26-triton/hift.log.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tts_core.vocoder.hift as hift_module  # noqa: E402
from tts_core import load_pipeline  # noqa: E402


def main() -> None:
    pipe = load_pipeline(sys.argv[1], device="cuda")
    hift = pipe._models.hift
    mel = (
        torch.randn(1, 80, 500, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0)) * 2
        - 5
    )

    def run() -> torch.Tensor:
        return hift(mel, torch.Generator(device="cuda").manual_seed(0))

    fused = hift_module._fused_snake
    hift_module._fused_snake = lambda: None
    ref = run()

    def bench(label: str) -> None:
        for _ in range(3):
            run()
        times = []
        for _ in range(15):
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = run()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        diff = float((out - ref).abs().max())
        print(f"HiFT 10 s audio, {label}: median {1000 * sorted(times)[7]:.2f} ms (min {1000 * min(times):.2f}), "
              f"max abs diff vs IEEE fp32 torch {diff:.2e}")  # fmt: skip

    torch.backends.cudnn.allow_tf32 = False
    bench("torch Snake, TF32 off")
    hift_module._fused_snake = fused
    bench("fused Snake, TF32 off")
    torch.backends.cudnn.allow_tf32 = True
    bench("fused Snake, TF32 convs (pipeline default)")
    hift_module._fused_snake = lambda: None
    bench("torch Snake, TF32 convs")


if __name__ == "__main__":
    main()
