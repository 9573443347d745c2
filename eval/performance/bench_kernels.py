"""Launch-shape sweep of the Triton LLM decode kernels (:mod:`tts_core.llm.decode_kernels`) on this GPU.

Command line::

    python -m eval.performance.bench_kernels [--dtype bfloat16] [--quick] [--out results/kernels.json]

Every kernel of one decode step is timed at the CosyVoice2-0.5B sizes (hidden 896, 14 query / 2
key-value heads of 64, intermediate 4864, 6564 speech logits) for each candidate launch shape
(output rows per program, reduction chunk, warps; keys per tile and splits for attention). A
timing is the mean over CUDA-graph replays of the kernel cycling through distinct weight copies
larger together than the L2 cache, as in decoding, where all 24 layers' weights stream past
between two uses of one matrix. cuBLAS (``F.linear``) is timed on the same shapes for comparison.

It prints the fastest shape per kernel and the :class:`~tts_core.llm.triton_backbone.KernelTuning`
they make, and writes JSON with the environment and every timing. The defaults of KernelTuning
come from this sweep on an H100 (BENCHMARKS.md); on another card, compare.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.performance.runinfo import ROOT, environment_info

EXIT_BAD_INPUT = 2
L2_BYTES = 64 << 20  # more than any current NVIDIA L2 (H100: 50 MB)
CONTEXTS = (365, 1000)  # attention lengths: a 10 s answer to a short prompt, and a long one


@dataclass(frozen=True)
class Sizes:
    """The decode-step sizes of the released model."""

    hidden: int = 896
    heads: int = 14
    kv_heads: int = 2
    head_dim: int = 64
    intermediate: int = 4864
    speech_logits: int = 6564
    capacity: int = 1024


def candidates(quick: bool) -> dict[str, list[tuple[int, ...]]]:
    """Launch shapes tried per kernel (tuples in the order of the KernelTuning fields)."""
    rows_small, rows_big, k_chunks = (
        ([2, 4, 8], [1, 4, 16], [256, 512])
        if quick
        else ([2, 4, 8, 16], [1, 2, 4, 8, 16, 32], [128, 256, 512])
    )
    warps = [4, 8] if quick else [2, 4, 8]
    return {
        "qkv": list(itertools.product([2, 4, 8], [128, 256], warps)),  # half block, block k, warps
        "attention": list(itertools.product([64, 128, 256] if quick else [32, 64, 128, 256], [1, 4, 8, 16], [4, 8])),
        "o": list(itertools.product(rows_small, k_chunks, warps)),
        "gate_up": list(itertools.product(rows_big, k_chunks, warps)),
        "down": list(itertools.product(rows_big, k_chunks, warps)),
        "head": list(itertools.product([8, 16, 32, 64], [128, 256], warps)),
    }  # fmt: skip


def tuning_fields(best: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Fastest shape per kernel -> KernelTuning keyword arguments."""
    names = {
        "qkv": ("qkv_half_block", "qkv_block_k", "qkv_warps"),
        "attention": ("attention_block_l", "attention_splits", "attention_warps"),
        "o": ("o_block_n", "o_block_k", "o_warps"),
        "gate_up": ("gate_up_block_n", "gate_up_block_k", "gate_up_warps"),
        "down": ("down_block_n", "down_block_k", "down_warps"),
        "head": ("head_block_n", "head_block_k", "head_warps"),
    }
    return {field: int(v) for kernel, shape in best.items() for field, v in zip(names[kernel], shape)}


def time_in_graph(calls: list[Callable[[], None]], reps: int = 10, replays: int = 5) -> float:
    """Microseconds per call: ``calls`` captured ``reps`` times in one CUDA graph, replayed."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm up outside the capture
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            for call in calls:
                call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return 1000.0 * start.elapsed_time(end) / (replays * reps * len(calls))


class KernelSweep:
    """Buffers at the released sizes and one ``calls(kernel, shape)`` factory per kernel."""

    def __init__(self, dtype, sizes: Sizes = Sizes()) -> None:
        import torch

        self.s, self.dtype = sizes, dtype
        gen = torch.Generator(device="cuda").manual_seed(0)
        s = sizes

        def rand(*shape, scale=0.05):
            return (scale * torch.randn(*shape, device="cuda", generator=gen)).to(dtype)

        def copies(*shape) -> list:
            n = max(2, -(-L2_BYTES // (torch.Size(shape).numel() * rand(1).element_size())))
            return [rand(*shape) for _ in range(min(n, 64))]

        n_qkv = (s.heads + 2 * s.kv_heads) * s.head_dim
        self.x, self.norm = rand(s.hidden, scale=1.0), rand(s.hidden) + 1
        self.q, self.attn = rand(s.heads * s.head_dim, scale=1.0), rand(s.heads * s.head_dim, scale=1.0)
        self.mlp, self.logits = rand(s.intermediate, scale=1.0), torch.empty(s.speech_logits, device="cuda")
        self.pos = torch.tensor([CONTEXTS[0] - 1], device="cuda")
        self.inv_freq = 1.0 / (1e6 ** (torch.arange(0, s.head_dim, 2, device="cuda").float() / s.head_dim))
        self.qkv_w, self.qkv_b = copies(n_qkv, s.hidden), copies(n_qkv)
        self.k_cache = copies(s.kv_heads, s.capacity, s.head_dim)
        self.v_cache = copies(s.kv_heads, s.capacity, s.head_dim)
        self.o_w, self.gate_up_w = (
            copies(s.hidden, s.heads * s.head_dim),
            copies(2 * s.intermediate, s.hidden),
        )
        self.down_w, self.head_w, self.head_b = (
            copies(s.hidden, s.intermediate), copies(s.speech_logits, s.hidden), copies(s.speech_logits)
        )  # fmt: skip

    def triton_calls(self, kernel: str, shape: tuple[int, ...], context: int = CONTEXTS[0]) -> list:
        import torch
        import triton

        from tts_core.llm import decode_kernels as K

        s, x = self.s, self.x
        cdiv = triton.cdiv
        if kernel == "qkv":
            hb, bk, w = shape
            grid = ((s.heads + 2 * s.kv_heads) * (s.head_dim // 2) // hb,)
            return [
                lambda i=i: K.norm_qkv_rope_kernel[grid](
                    x, self.norm, self.qkv_w[i], self.qkv_b[i], self.pos, self.inv_freq, self.q,
                    self.k_cache[i % len(self.k_cache)], self.v_cache[i % len(self.v_cache)], s.capacity, 1e-6,
                    H=s.hidden, BLOCK_H=triton.next_power_of_2(s.hidden), N_Q_HEADS=s.heads,
                    N_KV_HEADS=s.kv_heads, HEAD_DIM=s.head_dim, HALF_BLOCK=hb, BLOCK_K=bk, num_warps=w,
                )
                for i in range(len(self.qkv_w))
            ]  # fmt: skip
        if kernel == "attention":
            bl, splits, w = shape
            pos = torch.tensor([context - 1], device="cuda")
            part_acc = torch.empty(s.heads, splits, s.head_dim, device="cuda")
            part_ml = torch.empty(s.heads, splits, 2, device="cuda")

            def attend(i: int) -> None:
                K.decode_attention_kernel[(s.heads, splits)](
                    self.q, self.k_cache[i], self.v_cache[i], self.attn, part_acc, part_ml, pos, s.capacity,
                    s.head_dim**-0.5, GROUP=s.heads // s.kv_heads, HEAD_DIM=s.head_dim, BLOCK_L=bl,
                    SPLITS=splits, num_warps=w,
                )  # fmt: skip
                if splits > 1:
                    K.attention_combine_kernel[(s.heads,)](
                        part_acc, part_ml, self.attn, HEAD_DIM=s.head_dim, SPLITS=splits, num_warps=1
                    )

            return [lambda i=i: attend(i) for i in range(len(self.k_cache))]
        bn, bk, w = shape
        if kernel == "gate_up":
            return [
                lambda i=i: K.norm_gate_up_silu_kernel[(cdiv(s.intermediate, bn),)](
                    x, self.norm, self.gate_up_w[i], self.mlp, 1e-6, H=s.hidden,
                    BLOCK_H=triton.next_power_of_2(s.hidden), INTERMEDIATE=s.intermediate, BLOCK_N=bn,
                    BLOCK_K=bk, num_warps=w,
                )
                for i in range(len(self.gate_up_w))
            ]  # fmt: skip
        vec, weights, bias, out, n = {
            "o": (self.attn, self.o_w, None, x, s.hidden),
            "down": (self.mlp, self.down_w, None, x, s.hidden),
            "head": (x, self.head_w, self.head_b, self.logits, s.speech_logits),
        }[kernel]
        return [
            lambda i=i: K.gemv_kernel[(cdiv(n, bn),)](
                vec, weights[i], out if bias is None else bias[i], out, out, n, K=weights[i].shape[1],
                HAS_BIAS=bias is not None, HAS_RESIDUAL=bias is None, BLOCK_N=bn, BLOCK_K=bk, num_warps=w,
            )
            for i in range(len(weights))
        ]  # fmt: skip

    def cublas_calls(self, kernel: str) -> list:
        import torch.nn.functional as F

        pairs = {
            "qkv": (self.x, self.qkv_w, self.qkv_b),
            "o": (self.attn, self.o_w, None),
            "gate_up": (self.x, self.gate_up_w, None),
            "down": (self.mlp, self.down_w, None),
            "head": (self.x, self.head_w, self.head_b),
        }
        vec, weights, bias = pairs[kernel]
        return [
            lambda i=i: F.linear(vec, weights[i], None if bias is None else bias[i])
            for i in range(len(weights))
        ]


def sweep(bench: KernelSweep, grid: dict[str, Iterable[tuple[int, ...]]], log=print) -> dict:
    """Time every candidate -> {kernel: {"timings": [...], "best": shape, "best_us": t, "cublas_us": t}}."""
    out: dict[str, dict] = {}
    for kernel, shapes in grid.items():
        contexts = CONTEXTS if kernel == "attention" else (None,)
        timings = []
        for shape in shapes:
            row = {"shape": list(shape)}
            for ctx in contexts:
                calls = bench.triton_calls(kernel, shape, ctx) if ctx else bench.triton_calls(kernel, shape)
                row[f"us_context_{ctx}" if ctx else "us"] = round(time_in_graph(calls), 3)
            # attention is ranked by its mean over the context lengths
            row["score_us"] = sum(v for k, v in row.items() if k.startswith("us")) / len(contexts)
            timings.append(row)
            log(f"{kernel} {tuple(shape)}: {row['score_us']:.2f} us")
        best = min(timings, key=lambda r: r["score_us"])
        cublas = None if kernel == "attention" else round(time_in_graph(bench.cublas_calls(kernel)), 3)
        out[kernel] = {
            "timings": timings,
            "best": best["shape"],
            "best_us": best["score_us"],
            "cublas_us": cublas,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--quick", action="store_true", help="fewer candidate shapes (about a third)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "kernels.json")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: the kernel sweep needs a CUDA GPU (none on this machine)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        print(f"error: the kernel sweep needs Triton ({exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    from tts_core.llm.triton_backbone import KernelTuning

    bench = KernelSweep(getattr(torch, args.dtype))
    results = sweep(bench, candidates(args.quick))
    tuning = KernelTuning(**tuning_fields({k: tuple(v["best"]) for k, v in results.items()}))
    env = environment_info(f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})",
                           "eval.performance.bench_kernels", sys.argv[1:] if argv is None else argv)  # fmt: skip
    doc = {"environment": env, "dtype": args.dtype, "sizes": asdict(Sizes()), "kernels": results,
           "fastest_tuning": asdict(tuning), "default_tuning": asdict(KernelTuning())}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(
        f"\n{env['card']}, {args.dtype}: fastest launch shape per kernel (us per call; cuBLAS on the same GEMV)"
    )
    for kernel, r in results.items():
        cublas = f"   cuBLAS {r['cublas_us']:.2f}" if r["cublas_us"] is not None else ""
        print(f"  {kernel:10s} {tuple(r['best'])!s:16s} {r['best_us']:7.2f}{cublas}")
    print(f"{tuning!r}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
