"""Text tokenizer: the tiny Qwen2-layout folder loads, and ids match HF AutoTokenizer + the official specials."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from tts_core.frontend.tokenizer import TextTokenizer
from tts_core.model.tiny_tokenizer import TINY_VOCAB_SIZE, write_tiny_tokenizer

# Independent truth: the dict the official CosyVoice2Tokenizer hands to HF add_special_tokens,
# typed here from cosyvoice/tokenizer/tokenizer.py (not imported from tts_core).
OFFICIAL_SPECIAL_TOKENS = {
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|endofprompt|>", "[breath]", "<strong>", "</strong>", "[noise]",
        "[laughter]", "[cough]", "[clucking]", "[accent]", "[quick_breath]", "<laughter>", "</laughter>",
        "[hissing]", "[sigh]", "[vocalized-noise]", "[lipsmack]", "[mn]",
    ],
}  # fmt: skip

TEXTS = [
    "Hello, world! This is a test.",
    "今天天气很好，我们一起去公园散步吧。",
    "中文和 English 混合的句子, with numbers 12345 and 3.14!",
    "<|endofprompt|>Read this [breath] slowly, <strong>please</strong>.",
    "You are a helpful assistant.<|endofprompt|>希望你以后能够做的比我还好呦。",
    "  leading spaces,\ttabs\nand\n\nnew lines   ",
    "Unseen words: Zyzzyva, quixotic, 鬣狗, ñandú, Ελληνικά, 😀🎉.",
    "It's what they'll do; we're sure you've seen I'm right.",
    "[laughter][cough] back to back [mn]<laughter>ha</laughter>",
    "e\u0301 vs \u00e9 and \u212b",  # not NFC: the normaliser composes before BPE
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("CosyVoice-BlankEN")
    write_tiny_tokenizer(folder, TINY_VOCAB_SIZE)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_folder: Path) -> TextTokenizer:
    return TextTokenizer.from_dir(tiny_folder)


def _hf_official(folder: Path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    hf.add_special_tokens(OFFICIAL_SPECIAL_TOKENS)
    return hf


def test_tiny_folder_has_qwen2_layout(tiny_folder: Path) -> None:
    assert {p.name for p in tiny_folder.iterdir()} == {"vocab.json", "merges.txt", "tokenizer_config.json"}
    assert (tiny_folder / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_hf_autotokenizer(tokenizer: TextTokenizer, tiny_folder: Path, text: str) -> None:
    hf = _hf_official(tiny_folder)
    assert tokenizer.encode(text) == hf([text])["input_ids"][0]


def test_vocab_and_special_ids_match_hf(tokenizer: TextTokenizer, tiny_folder: Path) -> None:
    hf = _hf_official(tiny_folder)
    assert tokenizer.vocab_size == len(hf) <= TINY_VOCAB_SIZE
    for token in OFFICIAL_SPECIAL_TOKENS["additional_special_tokens"] + ["<|endoftext|>"]:
        assert tokenizer.token_to_id(token) == hf.convert_tokens_to_ids(token), token


def test_special_tokens_follow_vocab_in_official_order(tokenizer: TextTokenizer) -> None:
    # Qwen2's <|endoftext|>, <|im_start|>, <|im_end|> come first, then the new CosyVoice2 tokens in list order.
    order = ["<|endoftext|>"] + OFFICIAL_SPECIAL_TOKENS["additional_special_tokens"]
    ids = [tokenizer.token_to_id(t) for t in order]
    assert ids == list(range(ids[0], ids[0] + len(order)))
    assert ids[-1] == tokenizer.vocab_size - 1


@pytest.mark.parametrize(
    "token", ["[breath]", "<|endofprompt|>", "<strong>", "</strong>", "[vocalized-noise]"]
)
def test_special_tokens_are_single_ids(tokenizer: TextTokenizer, token: str) -> None:
    assert tokenizer.encode(token) == [tokenizer.token_to_id(token)]
    ids = tokenizer.encode(f"a{token}b")
    assert tokenizer.token_to_id(token) in ids and len(ids) == 3


def test_all_ids_below_vocab_size(tokenizer: TextTokenizer) -> None:
    for text in TEXTS:
        assert all(0 <= i < tokenizer.vocab_size <= TINY_VOCAB_SIZE for i in tokenizer.encode(text))


@pytest.mark.parametrize("text", [t for t in TEXTS if "[" not in t and "<" not in t])
def test_decode_round_trips_nfc_text(tokenizer: TextTokenizer, text: str) -> None:
    nfc = unicodedata.normalize("NFC", text)
    assert tokenizer.decode(tokenizer.encode(text)) == nfc
    assert tokenizer.encode(text) == tokenizer.encode(nfc)


def test_decode_skips_special_tokens_like_official(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("[breath]Hi<|endofprompt|> there")
    assert tokenizer.decode(ids) == "Hi there"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "[breath]Hi<|endofprompt|> there"
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode([tokenizer.vocab_size])


def test_config_added_tokens_keep_declared_ids(tiny_folder: Path, tmp_path: Path) -> None:
    # A Qwen2.5-like config declares more added tokens (some not special) after the vocabulary.
    folder = tmp_path / "qwen25"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    next_id = max(int(k) for k in config["added_tokens_decoder"]) + 1
    for i, (content, special) in enumerate(
        [("<|object_ref_start|>", True), ("<tool_call>", False), ("<|fim_pad|>", False)]
    ):
        entry = dict(config["added_tokens_decoder"][str(next_id - 1)], content=content, special=special)
        config["added_tokens_decoder"][str(next_id + i)] = entry
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    ours, hf = TextTokenizer.from_dir(folder), _hf_official(folder)
    assert ours.vocab_size == len(hf)
    assert ours.token_to_id("<tool_call>") == next_id + 1
    for text in TEXTS + ["x<tool_call>y<|fim_pad|>"]:
        assert ours.encode(text) == hf([text])["input_ids"][0]


def test_tokenizer_json_folder_gives_same_ids(
    tokenizer: TextTokenizer, tiny_folder: Path, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.AutoTokenizer.from_pretrained(str(tiny_folder)).save_pretrained(str(tmp_path))
    (tmp_path / "vocab.json").unlink(missing_ok=True)
    (tmp_path / "merges.txt").unlink(missing_ok=True)
    assert (tmp_path / "tokenizer.json").is_file()
    other = TextTokenizer.from_dir(tmp_path)
    for text in TEXTS:
        assert other.encode(text) == tokenizer.encode(text)


def test_writer_is_deterministic_and_respects_small_vocab(tiny_folder: Path, tmp_path: Path) -> None:
    write_tiny_tokenizer(tmp_path / "again", TINY_VOCAB_SIZE)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_folder / name).read_bytes()
    write_tiny_tokenizer(tmp_path / "small", 400)
    small = TextTokenizer.from_dir(tmp_path / "small")
    assert small.vocab_size <= 400
    assert all(i < 400 for t in TEXTS for i in small.encode(t))
    assert small.decode(small.encode(TEXTS[1])) == TEXTS[1]
    with pytest.raises(ValueError, match="vocab_size"):
        write_tiny_tokenizer(tmp_path / "too_small", 300)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("vocab.json", None),
        ("vocab.json", '{"a": 0, "b": '),
        ("vocab.json", '["not", "a", "dict"]'),
        ("vocab.json", '{"a": 0, "b": 1}'),  # lacks the byte-level alphabet
        ("merges.txt", None),
        ("merges.txt", "#version: 0.2\nĠ t h\n"),
        ("merges.txt", "#version: 0.2\nnot_in_vocab alsonot\n"),
        ("tokenizer_config.json", "{broken"),
    ],
)
def test_missing_or_corrupt_files_name_the_file(
    tiny_folder: Path, tmp_path: Path, name: str, damage: str | None
) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(tiny_folder, folder)
    if damage is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(damage, encoding="utf-8")
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        TextTokenizer.from_dir(folder)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        TextTokenizer.from_dir(tmp_path / "nowhere")
