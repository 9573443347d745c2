"""The CosyVoice2 speech-token language model (official ``Qwen2LM``), inference only.

Input sequence (official ``Qwen2LM.inference``)::

    [sos] + embed_tokens(prompt_text ++ text) + [task_id] + speech_embedding(prompt_speech_tokens)

then one speech token per step, each fed back through ``speech_embedding``. The 192-d speaker
embedding is ignored by the CosyVoice2 LLM (as in the official code).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tts_core.constants import EOS_TOKEN, SOS_INDEX, STOP_TOKENS, TASK_ID_INDEX
from tts_core.llm.qwen2 import KVCache, Qwen2Config, Qwen2Encoder
from tts_core.llm.sampling import SamplingParams, draw_uniforms, ras_sample
from tts_core.model.yaml_config import YamlObject
from tts_core.options import SynthesisOptions


@dataclass(frozen=True)
class LLMConfig:
    """Sizes of the speech LM: the yaml's ``llm`` node plus the backbone's config.json."""

    llm_input_size: int
    llm_output_size: int
    speech_token_size: int
    qwen: Qwen2Config

    @classmethod
    def from_yaml(cls, node: YamlObject, qwen: Qwen2Config) -> LLMConfig:
        cfg = cls(
            int(node["llm_input_size"]), int(node["llm_output_size"]), int(node["speech_token_size"]), qwen
        )
        if cfg.llm_input_size != qwen.hidden_size or cfg.llm_output_size != qwen.hidden_size:
            raise ValueError(
                f"llm_input_size/llm_output_size ({cfg.llm_input_size}/{cfg.llm_output_size}) do not match "
                f"the Qwen2 hidden_size {qwen.hidden_size} of CosyVoice-BlankEN/config.json"
            )
        if cfg.speech_token_size != EOS_TOKEN:
            raise ValueError(f"speech_token_size {cfg.speech_token_size} is not CosyVoice2's {EOS_TOKEN}")
        return cfg


@dataclass(frozen=True)
class DecodePlan:
    """Lengths and sampling settings of one segment's decode (shared by both decoders)."""

    min_len: int  # tokens before which ``forbidden_early`` are masked
    max_len: int  # decoding stops after this many tokens
    forbidden_early: list[int]
    sampling: SamplingParams


def decode_plan(text_ids: Tensor, options: SynthesisOptions) -> DecodePlan:
    """The official length rule for a segment of ``text_ids`` (ValueError when it is empty).

    eos (6561) is forbidden before ``min_token_text_ratio * n_text`` tokens (6562 and 6563 are
    not), and decoding stops after ``max_token_text_ratio * n_text``. With ``fixed_tokens`` every
    stop token is forbidden and exactly that many tokens are made.
    """
    n_text = int(text_ids.numel())
    if n_text == 0:
        raise ValueError("text is empty after tokenisation")
    sampling = SamplingParams(options.top_p, options.top_k, options.win_size, options.tau_r)
    if options.fixed_tokens is not None:
        return DecodePlan(options.fixed_tokens, options.fixed_tokens, list(STOP_TOKENS), sampling)
    min_len = int(n_text * options.min_token_text_ratio)
    return DecodePlan(min_len, max(1, int(n_text * options.max_token_text_ratio)), [EOS_TOKEN], sampling)


class SpeechLM(nn.Module):
    """Parameter names match the official ``llm.pt`` (strict loading)."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.llm_embedding = nn.Embedding(2, cfg.llm_input_size)  # row 0 sos, row 1 task id
        self.llm = Qwen2Encoder(cfg.qwen)
        self.llm_decoder = nn.Linear(cfg.llm_output_size, cfg.speech_token_size + 3)
        self.speech_embedding = nn.Embedding(cfg.speech_token_size + 3, cfg.llm_input_size)

    @property
    def backbone(self):
        return self.llm.model.model

    def prefill_embeddings(
        self, text_ids: Tensor, prompt_text_ids: Tensor, prompt_speech_tokens: Tensor
    ) -> Tensor:
        """(Lt,), (Lp,), (Ls,) int64 -> (1, 1 + Lp + Lt + 1 + Ls, hidden) in the weights' dtype."""
        vocab = self.cfg.qwen.vocab_size
        ids = torch.cat([prompt_text_ids, text_ids]).to(self.llm_embedding.weight.device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(f"text token ids must be in [0, {vocab}) for this model")
        if prompt_speech_tokens.numel() and int(prompt_speech_tokens.max()) >= self.cfg.speech_token_size:
            raise ValueError(f"prompt speech tokens must be below {self.cfg.speech_token_size}")
        parts = [
            self.llm_embedding.weight[SOS_INDEX].view(1, -1),
            self.backbone.embed_tokens(ids),
            self.llm_embedding.weight[TASK_ID_INDEX].view(1, -1),
            self.speech_embedding(prompt_speech_tokens.to(ids.device)),
        ]
        return torch.cat(parts, dim=0).unsqueeze(0)

    def new_cache(self, capacity: int) -> KVCache:
        w = self.llm_decoder.weight
        return KVCache(self.cfg.qwen, capacity, w.dtype, w.device)

    def forward_hidden(self, embeds: Tensor, cache: KVCache, start: int) -> Tensor:
        """Run embeds (1, T, hidden) at positions start.. -> last hidden state (1, hidden)."""
        return self.backbone(embeds, cache, start)[:, -1]

    def logits(self, hidden: Tensor) -> Tensor:
        """(1, hidden) -> (1, speech_token_size + 3) in the weights' dtype."""
        return self.llm_decoder(hidden)

    @torch.inference_mode()
    def generate(
        self,
        text_ids: Tensor,
        prompt_text_ids: Tensor,
        prompt_speech_tokens: Tensor,
        options: SynthesisOptions,
        generator: torch.Generator | None,
        stop_check_every: int = 1,
    ) -> Tensor:
        """Sample speech tokens for one text segment -> (L,) int64 on the model's device.

        Lengths follow the official rule: at least ``min_token_text_ratio * len(text_ids)`` tokens
        (eos 6561 is forbidden before that; 6562/6563 are not, as in the official code) and at most
        ``max_token_text_ratio * len(text_ids)``. ``options.fixed_tokens`` instead forbids every stop
        token and emits exactly that many (benchmarks). The stop check syncs with the host only every
        ``stop_check_every`` tokens; tokens drawn after a stop are discarded.
        """
        pieces = self.generate_pieces(
            text_ids, prompt_text_ids, prompt_speech_tokens, options, generator, stop_check_every
        )
        return join_pieces(list(pieces), self.llm_decoder.weight.device)

    @torch.inference_mode()
    def generate_pieces(
        self,
        text_ids: Tensor,
        prompt_text_ids: Tensor,
        prompt_speech_tokens: Tensor,
        options: SynthesisOptions,
        generator: torch.Generator | None,
        stop_check_every: int = 1,
        check_at: int = 0,
    ) -> Iterator[Tensor]:
        """:meth:`generate` as it goes: yields the tokens confirmed at each stop check, (k,) int64
        on the model's device (stop tokens removed; concatenated they are ``generate``'s result).

        Checks run every ``stop_check_every`` tokens and also right after token ``check_at``
        (0: no extra check): the streaming path asks for its first hop there."""
        device = self.llm_decoder.weight.device
        plan = decode_plan(text_ids, options)
        min_len, max_len, params = plan.min_len, plan.max_len, plan.sampling

        embeds = self.prefill_embeddings(text_ids.long(), prompt_text_ids.long(), prompt_speech_tokens.long())
        cache = self.new_cache(embeds.shape[1] + max_len)
        hidden = self.forward_hidden(embeds, cache, 0)
        position = embeds.shape[1]

        early_mask = torch.zeros(self.cfg.speech_token_size + 3, device=device)
        early_mask[plan.forbidden_early] = float("-inf")
        uniforms = draw_uniforms(max_len, generator, device)
        tokens = torch.full((max_len,), -1, dtype=torch.long, device=device)
        history = torch.full((options.win_size,), -1, dtype=torch.long, device=device)
        confirmed = 0  # tokens[:confirmed] were checked and yielded
        for step in range(max_len):
            # softmax(logits) = softmax(log_softmax(logits)): the official log_softmax is skipped.
            scores = self.logits(hidden)[0].float()
            if step < min_len:
                scores = scores + early_mask
            token = ras_sample(scores, history, params, uniforms[step])
            tokens[step : step + 1] = token
            history = torch.cat([history[1:], token])
            if is_stop_check(step + 1, stop_check_every, check_at, max_len):
                end, stopped = first_stop(tokens, confirmed, step + 1, self.cfg.speech_token_size)
                if end > confirmed:
                    yield tokens[confirmed:end].clone()
                confirmed = end
                if stopped:
                    return
            if step + 1 < max_len:
                hidden = self.forward_hidden(self.speech_embedding(token).unsqueeze(0), cache, position)
                position += 1


def is_stop_check(made: int, every: int, check_at: int, max_len: int) -> bool:
    """Check for a stop token once ``made`` tokens exist? Every ``every`` tokens, at ``check_at``
    (0: never) and at the last token ``max_len``."""
    return made % every == 0 or made in (check_at, max_len)


def first_stop(tokens: Tensor, start: int, end: int, n_speech: int) -> tuple[int, bool]:
    """Check tokens[start:end] for a stop token (one host sync) -> (end of the speech tokens, stopped)."""
    stops = (tokens[start:end] >= n_speech).nonzero()
    if stops.numel():
        return start + int(stops[0, 0]), True
    return end, False


def join_pieces(pieces: list[Tensor], device: torch.device) -> Tensor:
    """The pieces of a ``generate_pieces`` run as one (L,) int64 tensor (empty when none)."""
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long, device=device)
