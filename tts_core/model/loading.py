"""Building the three networks from a model directory's yaml and loading their weights strictly."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tts_core.flow.model import FlowConfig, FlowModel
from tts_core.llm.qwen2 import Qwen2Config
from tts_core.llm.speech_lm import LLMConfig, SpeechLM
from tts_core.model.model_dir import ModelDir, load_into, load_weights, read_model_yaml
from tts_core.vocoder.hift import HiFTConfig, HiFTGenerator, normalize_hift_state_dict


@dataclass
class LoadedModels:
    """float32 networks on the target device, in eval mode."""

    llm: SpeechLM
    flow: FlowModel
    hift: HiFTGenerator
    flow_vocab_size: int  # speech tokens the flow can embed (6561)


def load_models(md: ModelDir, device: torch.device) -> LoadedModels:
    """Sizes from ``cosyvoice2.yaml`` + ``CosyVoice-BlankEN/config.json``; weights from the .pt files."""
    config = read_model_yaml(md)
    qwen = Qwen2Config.from_json(md.qwen_config)
    try:
        llm_cfg = LLMConfig.from_yaml(config["llm"], qwen)
        flow_cfg = FlowConfig.from_yaml(config["flow"])
        hift_cfg = HiFTConfig.from_yaml(config["hift"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{md.yaml}: a model entry lacks a required setting ({exc})") from exc

    llm = SpeechLM(llm_cfg)
    load_into(llm, load_weights(md.weights("llm")), md.weights("llm"))
    flow = FlowModel(flow_cfg)
    load_into(flow, load_weights(md.weights("flow")), md.weights("flow"))
    hift = HiFTGenerator(hift_cfg)
    load_into(hift, normalize_hift_state_dict(load_weights(md.weights("hift"))), md.weights("hift"))
    return LoadedModels(
        llm=llm.to(device).eval(),
        flow=flow.to(device).eval(),
        hift=hift.fold_weight_norm().to(device).eval(),  # folded once: same output, faster
        flow_vocab_size=int(flow.input_embedding.num_embeddings),
    )
