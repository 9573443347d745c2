"""Text tokenizer of CosyVoice2: Qwen2 byte-level BPE plus the CosyVoice2 special tokens.

The official frontend loads ``<model>/CosyVoice-BlankEN`` with HF ``AutoTokenizer`` and then calls
``add_special_tokens`` with a fixed list; ids of the added tokens depend on that list's order, and the
LLM's text embedding rows are indexed by those ids. This module rebuilds the same tokenizer directly
with the ``tokenizers`` library (what HF's fast Qwen2 tokenizer wraps), so it loads offline in well
under a second and gives the same ids:

* NFC normalisation, Qwen2's pre-tokenizer regex, byte-level BPE without unk / byte fallback;
* the folder's own added tokens (``tokenizer_config.json`` ``added_tokens_decoder``) at their ids;
* the special tokens the config names, then the CosyVoice2 list, appended in order when new.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

# Qwen2's pre-tokenizer split (tokenization_qwen2.py); digits are split one by one.
QWEN2_PRETOKENIZE_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Qwen2's own special tokens; every Qwen2 folder defines them right after the BPE vocabulary.
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# CosyVoice2Tokenizer: eos and pad are <|endoftext|>, then these additional special tokens.
# NOTE: the order fixes the ids of the new tokens (appended after the folder's vocabulary);
# never sort or dedupe this list differently from the official one.
COSYVOICE2_EOS_TOKEN = "<|endoftext|>"
COSYVOICE2_ADDITIONAL_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endofprompt|>",
    "[breath]",
    "<strong>",
    "</strong>",
    "[noise]",
    "[laughter]",
    "[cough]",
    "[clucking]",
    "[accent]",
    "[quick_breath]",
    "<laughter>",
    "</laughter>",
    "[hissing]",
    "[sigh]",
    "[vocalized-noise]",
    "[lipsmack]",
    "[mn]",
)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"

# tokenizer_config.json keys of single special tokens, in the order HF adds missing ones.
_CONFIG_SPECIAL_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_FIX_HINT = "re-download the model's CosyVoice-BlankEN folder (or rewrite the tiny model)"


def apply_qwen2_pipeline(tokenizer: Tokenizer) -> None:
    """Set Qwen2's normaliser, pre-tokenizer, post-processor and decoder on ``tokenizer`` (in place).

    Shared with the tiny-tokenizer writer so that its merges are learnt on the same pre-tokens.
    """
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # The ByteLevel post-processor only fixes offsets; Qwen2 adds no BOS/EOS around a text.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} could not be read as JSON ({err}); {_FIX_HINT}") from None


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = _read_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path} must be a non-empty JSON object of token -> id; {_FIX_HINT}")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in vocab.values()):
        raise ValueError(f"{path} has ids that are not non-negative integers; {_FIX_HINT}")
    if len(set(vocab.values())) != len(vocab):
        raise ValueError(f"{path} maps several tokens to one id; {_FIX_HINT}")
    # NOTE: without every byte symbol some characters would silently encode to nothing (no unk).
    missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} of the 256 byte-level symbols; {_FIX_HINT}")
    return vocab


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} could not be read ({err}); {_FIX_HINT}") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path} line {number} is not 'left right': {line[:60]!r}; {_FIX_HINT}")
        merges.append((parts[0], parts[1]))
    return merges


def _build_bpe(folder: Path) -> Tokenizer:
    vocab_path, merges_path = folder / VOCAB_FILE, folder / MERGES_FILE
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise ValueError(
                f"{path} is missing: a Qwen2 tokenizer folder needs {VOCAB_FILE} and {MERGES_FILE} "
                f"(or {TOKENIZER_FILE}); {_FIX_HINT}"
            )
    vocab, merges = _read_vocab(vocab_path), _read_merges(merges_path)
    try:
        model = BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    except Exception as err:  # the Rust side raises plain Exception, e.g. a merge of unknown tokens
        raise ValueError(f"{merges_path} does not fit {vocab_path} ({err}); {_FIX_HINT}") from None
    tokenizer = Tokenizer(model)
    apply_qwen2_pipeline(tokenizer)
    return tokenizer


def _add_config_tokens(tokenizer: Tokenizer, config: dict, config_path: Path) -> None:
    """Add the folder's own added tokens at their declared ids, then the special tokens it names."""
    declared = config.get("added_tokens_decoder", {})
    if not isinstance(declared, dict):
        raise ValueError(f"{config_path}: added_tokens_decoder must be an object; {_FIX_HINT}")
    entries = []
    for key, spec in declared.items():
        if not (isinstance(spec, dict) and isinstance(spec.get("content"), str) and str(key).isdigit()):
            raise ValueError(f"{config_path}: bad added_tokens_decoder entry {key!r}; {_FIX_HINT}")
        entries.append((int(key), spec))
    for token_id, spec in sorted(entries):
        token = AddedToken(
            spec["content"],
            single_word=bool(spec.get("single_word", False)),
            lstrip=bool(spec.get("lstrip", False)),
            rstrip=bool(spec.get("rstrip", False)),
            normalized=bool(spec.get("normalized", not spec.get("special", False))),
            special=bool(spec.get("special", False)),
        )
        if token.special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        # NOTE: tokens are appended in id order; a gap in the declared ids would shift every later id.
        if tokenizer.token_to_id(token.content) != token_id:
            raise ValueError(
                f"{config_path}: added token {token.content!r} is declared with id {token_id} but lands "
                f"on {tokenizer.token_to_id(token.content)} (ids must follow the vocabulary without gaps)"
            )
    named = [config.get(key) for key in _CONFIG_SPECIAL_KEYS]
    named += list(config.get("additional_special_tokens") or [])
    for name in named:
        content = name.get("content") if isinstance(name, dict) else name
        if isinstance(content, str) and tokenizer.token_to_id(content) is None:
            tokenizer.add_special_tokens([_special(content)])


def _special(content: str) -> AddedToken:
    # What HF's add_special_tokens makes of a plain string.
    return AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)


class TextTokenizer:
    """Qwen2 BPE + CosyVoice2 special tokens; ``encode`` gives the official text token ids."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        # max id + 1, so that every valid id is below it even if a tokenizer.json left id gaps
        self._size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1

    @classmethod
    def from_dir(cls, path: Path) -> TextTokenizer:
        """Load ``<model>/CosyVoice-BlankEN`` (vocab.json + merges.txt [+ tokenizer_config.json], or tokenizer.json).

        Raises ValueError naming the file when one is missing or corrupt. Never touches the network.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"tokenizer folder {folder} does not exist; {_FIX_HINT}")
        config_path = folder / TOKENIZER_CONFIG_FILE
        config: dict = {}
        if config_path.is_file():
            loaded = _read_json(config_path)
            if not isinstance(loaded, dict):
                raise ValueError(f"{config_path} must be a JSON object; {_FIX_HINT}")
            config = loaded
        if (folder / TOKENIZER_FILE).is_file():
            try:
                tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            except Exception as err:  # the Rust side raises plain Exception on bad JSON
                raise ValueError(
                    f"{folder / TOKENIZER_FILE} could not be loaded ({err}); {_FIX_HINT}"
                ) from None
        else:
            tokenizer = _build_bpe(folder)
        _add_config_tokens(tokenizer, config, config_path)
        for content in (COSYVOICE2_EOS_TOKEN, *COSYVOICE2_ADDITIONAL_SPECIAL_TOKENS):
            if tokenizer.token_to_id(content) is None:
                tokenizer.add_special_tokens([_special(content)])
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS), special tokens in the text map to their single ids."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        return self._tokenizer.encode(text, add_special_tokens=True).ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped by default, as the official decode does."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:5]}")
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of one vocabulary or added token, None when absent."""
        return self._tokenizer.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (max id + 1)."""
        return self._size
