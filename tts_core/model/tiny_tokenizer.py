"""A tiny Qwen2-layout tokenizer for the tiny random-weight model (tests and the offline demo).

The tiny LLM's text embedding has only ``vocab_size`` rows (4096), so the real 151,665-token Qwen2
vocabulary cannot be used with it. ``write_tiny_tokenizer`` trains a small byte-level BPE with Qwen2's
own pre-tokenizer on a built-in English + Chinese corpus and writes it in the file layout of a real
``CosyVoice-BlankEN`` folder (vocab.json, merges.txt, tokenizer_config.json), so that it goes through
exactly the same :meth:`TextTokenizer.from_dir` path. Every text round-trips because all 256 byte
symbols are in the vocabulary; the corpus only decides how compact the ids are.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers, trainers
from tokenizers.models import BPE

from tts_core.frontend.tokenizer import (
    COSYVOICE2_ADDITIONAL_SPECIAL_TOKENS,
    COSYVOICE2_EOS_TOKEN,
    MERGES_FILE,
    QWEN2_SPECIAL_TOKENS,
    TOKENIZER_CONFIG_FILE,
    VOCAB_FILE,
    apply_qwen2_pipeline,
)

TINY_VOCAB_SIZE = 4096  # rows of the tiny LLM's text embedding
BYTE_ALPHABET_SIZE = 256  # byte-level BPE needs one symbol per byte value
MIN_MERGES = 64  # below this the "BPE" is little more than bytes; refuse such a vocab_size
QWEN2_MODEL_MAX_LENGTH = 32_768  # as in Qwen2's tokenizer_config.json

# Training text: a few sentences of the kind the tests and demo synthesise. Only the merges depend
# on it, and the BpeTrainer is deterministic for a fixed corpus, so the written files are too.
_CORPUS_EN = """\
The quick brown fox jumps over the lazy dog while the farmer watches from the porch.
Hello, world! This is a small test of the speech synthesis pipeline.
Can you hear the difference between ten steps and five steps of the flow solver?
We measured the real-time factor on one graphics card and on the processor.
Please read the following sentence slowly and clearly, then pause for a breath.
In 1999 the museum opened a new wing; by 2024 it welcomed 3,500 visitors a day.
She paid $5.50 for coffee and 20% more for the cake on the 1st of May.
Listening tests ask people to rate how natural each sample sounds on a scale of one to five.
The weather today is sunny with a light breeze from the west, and tomorrow it may rain.
Our model turns text into speech tokens, speech tokens into a mel spectrogram, and that into sound.
I think it's a good idea, but they'll need more time; we're not sure what you've planned.
Numbers like 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and symbols such as & @ # % + - = / ( ) [ ] " ' : ; . , ? ! appear too.
"""
_CORPUS_ZH = """\
今天天气很好，我们一起去公园散步吧。
收到朋友从远方寄来的生日礼物，我的心里充满了快乐。
请用清楚的声音读出下面这句话，然后停顿一下。
这个语音合成系统可以把文字变成自然的声音。
你能听出十步和五步之间的区别吗？
我们在一张显卡和一台电脑上测量了实时率。
春天来了，花儿开了，小鸟在树上唱歌。
他说：“明天早上八点在学校门口见面。”
这本书一共有三百二十页，我已经读完了一半。
中文和英文混合的句子也要能够正确地处理，比如 CosyVoice 模型。
北京、上海、广州和深圳都是中国的大城市。
谢谢大家的耐心聆听，祝你们生活愉快，工作顺利！
"""


def _special_tokens() -> list[str]:
    # Qwen2's own specials come right after the BPE vocabulary, then the CosyVoice2 additions.
    tokens = list(QWEN2_SPECIAL_TOKENS)
    for token in (COSYVOICE2_EOS_TOKEN, *COSYVOICE2_ADDITIONAL_SPECIAL_TOKENS):
        if token not in tokens:
            tokens.append(token)
    return tokens


def train_tiny_bpe(bpe_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train the byte-level BPE: (vocab token -> id for ids 0..n-1 with n <= bpe_size, merges)."""
    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    apply_qwen2_pipeline(tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    lines = (_CORPUS_EN + _CORPUS_ZH).splitlines(keepends=True)
    tokenizer.train_from_iterator(lines, trainer=trainer)
    # The trained model serialises its merges in rank order; read them from there.
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in model["merges"]]
    return dict(model["vocab"]), merges


def write_tiny_tokenizer(folder: Path, vocab_size: int = TINY_VOCAB_SIZE) -> None:
    """Write vocab.json, merges.txt and tokenizer_config.json of a tiny Qwen2-style tokenizer to ``folder``.

    All ids, added special tokens included, are < ``vocab_size``. Existing files are overwritten.
    """
    specials = _special_tokens()
    smallest = BYTE_ALPHABET_SIZE + MIN_MERGES + len(specials)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ValueError(
            f"vocab_size must be an integer >= {smallest} "
            f"(256 byte symbols, {MIN_MERGES} merges, {len(specials)} special tokens), got {vocab_size!r}"
        )
    # The special tokens take the ids right after the BPE vocabulary, so leave room for them.
    vocab, merges = train_tiny_bpe(vocab_size - len(specials))
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RuntimeError("BPE training gave non-contiguous ids")  # a tokenizers-library change
    added = {
        str(len(vocab) + i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(QWEN2_SPECIAL_TOKENS)
    }
    # The fields of Qwen2's tokenizer_config.json; only the Qwen2 specials are declared there,
    # the CosyVoice2 ones are added at load time exactly as the official code does.
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(QWEN2_SPECIAL_TOKENS[1:]),
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": QWEN2_SPECIAL_TOKENS[0],
        "errors": "replace",
        "model_max_length": QWEN2_MODEL_MAX_LENGTH,
        "pad_token": QWEN2_SPECIAL_TOKENS[0],
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ordered = dict(sorted(vocab.items(), key=lambda item: item[1]))
    (folder / VOCAB_FILE).write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
    merge_lines = "".join(f"{left} {right}\n" for left, right in merges)
    (folder / MERGES_FILE).write_text("#version: 0.2\n" + merge_lines, encoding="utf-8")
    (folder / TOKENIZER_CONFIG_FILE).write_text(
        json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
