"""LLM decoding on a CUDA GPU at full size: Triton-step numerics against float32 eager, and speed.

    python benchmarks/scripts/decode_speed_and_numerics.py [OUT_DIR]

Builds the released-size speech LLM with random weights (norm weights and biases perturbed so
none is trivially 1 or 0), then:

* numerics: 120 teacher-forced steps after a 116-position prefill; the speech logits of the
  float16 / bfloat16 Triton step and of the torch modules in the same dtype, each against float32
  eager decoding (max / mean absolute difference, top-1 agreement, lowest cosine);
* speed: 250 forced tokens per ``StaticDecoder.generate`` (median of 5, prefill included), a
  kernel-time profile of one captured Triton step, and float32 Triton tokens against eager tokens.

Writes numerics.json into OUT_DIR (default: $OUT or /tmp). The output of the recorded run is
benchmarks/h100-2026-11-26-triton/decode_speed_and_numerics.log.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tts_core.llm.decode_state import new_state  # noqa: E402
from tts_core.llm.qwen2 import Qwen2Config  # noqa: E402
from tts_core.llm.speech_lm import LLMConfig, SpeechLM  # noqa: E402
from tts_core.llm.static_decoder import StaticDecoder, fuse_projections  # noqa: E402
from tts_core.llm.triton_backbone import TritonBackbone, speech_logits  # noqa: E402
from tts_core.model.factory import SIZES  # noqa: E402
from tts_core.options import SynthesisOptions  # noqa: E402

N_TOKENS = 250


def build_lm() -> SpeechLM:
    s = SIZES["full"]
    q = Qwen2Config(s.qwen_vocab, s.qwen_hidden, s.qwen_layers, s.qwen_heads, s.qwen_kv_heads,
                    s.qwen_intermediate, 1e-6, 1e6, 32768)  # fmt: skip
    torch.manual_seed(0)
    lm = SpeechLM(LLMConfig(q.hidden_size, q.hidden_size, 6561, q)).eval().cuda()
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.05 * torch.randn_like(p))
    return lm


@torch.inference_mode()
def forced_logits_eager(lm: SpeechLM, inputs, forced) -> torch.Tensor:
    embeds = lm.prefill_embeddings(*inputs)
    cache = lm.new_cache(embeds.shape[1] + len(forced) + 1)
    hidden, pos, out = lm.forward_hidden(embeds, cache, 0), embeds.shape[1], []
    for token in forced:
        out.append(lm.logits(hidden)[0].float())
        hidden = lm.forward_hidden(lm.speech_embedding(token.view(1)).unsqueeze(0), cache, pos)
        pos += 1
    return torch.stack(out)


@torch.inference_mode()
def forced_logits_triton(lm: SpeechLM, inputs, forced) -> torch.Tensor:
    fused = fuse_projections(lm)
    step = TritonBackbone(lm.backbone, [f.qkv_weight for f in fused], [f.qkv_bias for f in fused],
                          [f.gate_up_weight for f in fused])  # fmt: skip
    embeds = lm.prefill_embeddings(*inputs)
    st = new_state(lm, 1024, 10)
    st.hidden.copy_(lm.forward_hidden(embeds, st.cache, 0))
    st.pos.fill_(embeds.shape[1])
    out = []
    for token in forced:
        speech_logits(lm.llm_decoder.weight, lm.llm_decoder.bias, st.hidden[0], st.scores, step.tuning)
        out.append(st.scores.clone())
        step.step(lm.speech_embedding.weight[token], st.pos, st.step, st.cache, st.inv_freq, st.hidden[0])
    return torch.stack(out)


def compare(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    return {
        "max_abs": float((x - ref).abs().max()),
        "mean_abs": float((x - ref).abs().mean()),
        "top1_agree": float((x.argmax(-1) == ref.argmax(-1)).float().mean()),
        "cos_min": float(torch.nn.functional.cosine_similarity(x, ref, dim=-1).min()),
    }


def decode_speed(lm: SpeechLM, inputs, label: str) -> tuple[StaticDecoder, torch.Tensor]:
    dec = StaticDecoder(lm, step_kind="triton")
    opts = SynthesisOptions(seed=0, fixed_tokens=N_TOKENS)
    gen = lambda: torch.Generator(device="cuda").manual_seed(0)  # noqa: E731
    start = time.perf_counter()
    dec.generate(*inputs, opts, gen(), 16)
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = dec.generate(*inputs, opts, gen(), 16)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    t = sorted(times)[2]
    print(
        f"{label}: {N_TOKENS / t:.0f} tok/s ({1000 * t / N_TOKENS:.3f} ms/token incl. prefill), first call {first:.1f}s"
    )
    return dec, tokens


def profile_step(dec: StaticDecoder, replays: int = 20) -> None:
    from torch.profiler import ProfilerActivity, profile

    st = next(iter(dec._states.values()))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            st.graph.replay()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total]
    total = sum(e.device_time_total for e in events) / replays
    print(
        f"triton step: sum kernel us/step {total:.1f}, kernels/step {sum(e.count for e in events) / replays:.0f}"
    )
    for e in sorted(events, key=lambda e: -e.device_time_total)[:14]:
        print(f"{e.device_time_total / replays:9.1f} us  x{e.count / replays:5.1f}  {e.key[:90]}")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(200):
        st.graph.replay()
    end.record()
    torch.cuda.synchronize()
    print(f"pure replay ms/token {start.elapsed_time(end) / 200:.3f}")


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "/tmp"))
    torch.backends.cuda.matmul.allow_tf32 = False
    lm32 = build_lm()
    g = torch.Generator().manual_seed(1)
    inputs = tuple(
        torch.randint(0, high, (n,), generator=g).cuda()
        for n, high in ((30, 151000), (10, 151000), (75, 6561))
    )
    forced = torch.randint(0, 6561, (120,), generator=g).cuda()
    ref = forced_logits_eager(lm32, inputs, forced)
    numerics: dict[str, object] = {}
    for name in ("bfloat16", "float16"):
        lm = copy.deepcopy(lm32).to(getattr(torch, name))
        eager, triton = forced_logits_eager(lm, inputs, forced), forced_logits_triton(lm, inputs, forced)
        numerics[name] = {
            "torch_eager_vs_fp32": compare(eager, ref),
            "triton_vs_fp32": compare(triton, ref),
            "triton_vs_torch_eager_max_abs": float((triton - eager).abs().max()),
            "logit_scale": float(ref.abs().max()),
        }
        print(name, json.dumps(numerics[name]))
    numerics["float32_triton_vs_eager_max_abs"] = float(
        (forced_logits_triton(copy.deepcopy(lm32), inputs, forced) - ref).abs().max()
    )
    print("fp32 triton vs eager", numerics["float32_triton_vs_eager_max_abs"])
    (out_dir / "numerics.json").write_text(json.dumps(numerics, indent=1))
    for name in ("bfloat16", "float16"):
        dec, _ = decode_speed(copy.deepcopy(lm32).to(getattr(torch, name)), inputs, f"triton {name}")
        if name == "bfloat16":
            profile_step(dec)
    _, tokens = decode_speed(copy.deepcopy(lm32), inputs, "triton float32")
    eager = lm32.generate(*inputs, SynthesisOptions(seed=0, fixed_tokens=N_TOKENS),
                          torch.Generator(device="cuda").manual_seed(0), 16)  # fmt: skip
    print(
        f"fp32 triton tokens == eager: {bool(torch.equal(eager, tokens))} ({int((eager == tokens).sum())} of {N_TOKENS})"
    )
    print(f"mem GB {torch.cuda.max_memory_allocated() / 1e9:.2f}")


if __name__ == "__main__":
    main()
