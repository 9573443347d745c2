"""Random-weight CosyVoice2 model directories in the official layout.

``tiny`` (the widths of the shared reference model; loads and runs in seconds on a CPU) serves
the tests and the offline demo; ``full`` (the released sizes, about 640 M parameters) serves
speed benchmarks. Both load through exactly the same :func:`tts_core.load_pipeline` path as a
downloaded model. The audio they make is not speech.

    python -m tts_core.model.factory OUT_DIR --size tiny|full [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tts_core.flow.model import FlowConfig, FlowModel
from tts_core.llm.qwen2 import Qwen2Config
from tts_core.llm.speech_lm import LLMConfig, SpeechLM
from tts_core.model.cache import cache_root
from tts_core.model.model_dir import CAMPPLUS, QWEN_DIR, RANDOM_MODEL_META, SPEECH_TOKENIZER, YAML_NAME
from tts_core.model.tiny_onnx import write_campplus_onnx, write_speech_tokenizer_onnx
from tts_core.model.tiny_tokenizer import write_tiny_tokenizer
from tts_core.model.yaml_config import read_yaml
from tts_core.vocoder.hift import HiFTConfig, HiFTGenerator

FACTORY_VERSION = 1  # bump when the written files change, so cached demo models are rebuilt


@dataclass(frozen=True)
class ModelSize:
    """The size knobs that differ between the tiny and the released model."""

    qwen_hidden: int
    qwen_layers: int
    qwen_heads: int
    qwen_kv_heads: int
    qwen_intermediate: int
    qwen_vocab: int
    encoder_heads: int
    encoder_linear_units: int
    encoder_blocks: int
    estimator_channels: int
    estimator_head_dim: int
    estimator_heads: int
    estimator_blocks: int
    estimator_mid_blocks: int
    hift_base_channels: int
    hift_f0_channels: int


SIZES = {
    # the shared reference tiny model's widths
    "tiny": ModelSize(64, 2, 4, 2, 128, 4096, 2, 256, 1, 64, 16, 2, 1, 2, 64, 64),
    # CosyVoice2-0.5B (Qwen2.5-0.5B backbone)
    "full": ModelSize(896, 24, 14, 2, 4864, 151936, 8, 2048, 6, 256, 64, 8, 4, 12, 512, 512),
}

_YAML_TEMPLATE = """\
# Random-weight CosyVoice2 model written by tts_core.model.factory (size {size}); NOT speech.
# Same classes and layout as the official cosyvoice2.yaml (examples/libritts/cosyvoice2/conf).
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
__set_seed4: !apply:torch.cuda.manual_seed_all [1986]

sample_rate: 24000
llm_input_size: {s.qwen_hidden}
llm_output_size: {s.qwen_hidden}
spk_embed_dim: 192
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2
chunk_size: 25
num_decoding_left_chunks: -1

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: 6561
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 6561
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: {s.encoder_heads}
        linear_units: {s.encoder_linear_units}
        num_blocks: {s.encoder_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        static_chunk_size: !ref <chunk_size>
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{s.estimator_channels}]
            dropout: 0.0
            attention_head_dim: {s.estimator_head_dim}
            n_blocks: {s.estimator_blocks}
            num_mid_blocks: {s.estimator_mid_blocks}
            num_heads: {s.estimator_heads}
            act_fn: 'gelu'
            static_chunk_size: !ref <chunk_size> * <token_mel_ratio>
            num_decoding_left_chunks: !ref <num_decoding_left_chunks>

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s.hift_base_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s.hift_f0_channels}

feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
"""


def _qwen_config(s: ModelSize) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": s.qwen_hidden,
        "initializer_range": 0.02,
        "intermediate_size": s.qwen_intermediate,
        "max_position_embeddings": 32768,
        "max_window_layers": s.qwen_layers,
        "model_type": "qwen2",
        "num_attention_heads": s.qwen_heads,
        "num_hidden_layers": s.qwen_layers,
        "num_key_value_heads": s.qwen_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": s.qwen_vocab,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_configs(out: Path, size: str) -> None:
    """Write ``cosyvoice2.yaml`` and ``CosyVoice-BlankEN/config.json`` of ``size`` into ``out``."""
    s = SIZES[size]
    (out / QWEN_DIR).mkdir(parents=True, exist_ok=True)
    (out / YAML_NAME).write_text(_YAML_TEMPLATE.format(size=size, s=s), encoding="utf-8")
    (out / QWEN_DIR / "config.json").write_text(json.dumps(_qwen_config(s), indent=2), encoding="utf-8")


@dataclass(frozen=True)
class ModelConfigs:
    """The three networks' configs of one model directory, as loading reads them."""

    llm: LLMConfig
    flow: FlowConfig
    hift: HiFTConfig

    @classmethod
    def read(cls, model_dir: Path) -> ModelConfigs:
        config = read_yaml(model_dir / YAML_NAME)
        qwen = Qwen2Config.from_json(model_dir / QWEN_DIR / "config.json")
        return cls(
            LLMConfig.from_yaml(config["llm"], qwen),
            FlowConfig.from_yaml(config["flow"]),
            HiFTConfig.from_yaml(config["hift"]),
        )


def model_configs(size: str) -> ModelConfigs:
    """The configs of a random model of ``size`` (written and read back the way loading reads them)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    with tempfile.TemporaryDirectory(prefix="tts-configs-") as folder:
        write_configs(Path(folder), size)
        return ModelConfigs.read(Path(folder))


def build_networks(model_dir: Path) -> tuple[SpeechLM, FlowModel, HiFTGenerator]:
    """Freshly initialised LLM, flow and HiFT with the sizes of ``model_dir``'s configs."""
    configs = ModelConfigs.read(model_dir)
    return SpeechLM(configs.llm), FlowModel(configs.flow), HiFTGenerator(configs.hift)


def write_random_model(out_dir: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a complete random-weight model directory at ``out_dir`` (created; must not exist)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty")
    write_configs(out, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm, flow, hift = build_networks(out)
    for name, module in (("llm", llm), ("flow", flow), ("hift", hift)):
        torch.save(module.state_dict(), out / f"{name}.pt")
    write_speech_tokenizer_onnx(out / SPEECH_TOKENIZER, seed)
    write_campplus_onnx(out / CAMPPLUS, seed)
    write_tiny_tokenizer(out / QWEN_DIR, SIZES[size].qwen_vocab)
    meta = {
        "factory": "tts_core.model.factory",
        "factory_version": FACTORY_VERSION,
        "size": size,
        "seed": seed,
        "note": "random weights: the audio this model makes is not speech",
        "sha256": {p.name: _sha256(p) for p in sorted(out.glob("*.pt"))},
    }
    (out / RANDOM_MODEL_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


def demo_model_dir(seed: int = 0) -> Path:
    """The tiny random-weight demo model, written once into the cache (atomically) and reused."""
    target = cache_root() / f"demo-tiny-v{FACTORY_VERSION}-seed{seed}"
    if (target / RANDOM_MODEL_META).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        write_random_model(tmp / "model", "tiny", seed)
        try:
            os.replace(tmp / "model", target)
        except OSError:  # another process won the race; its copy is identical
            if not (target / RANDOM_MODEL_META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_random_model(args.out_dir, args.size, args.seed)
    print(f"wrote a random-weight {args.size} CosyVoice2 model to {path}")


if __name__ == "__main__":
    main()
