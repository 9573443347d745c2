"""Text normalisation (hand-written expected readings) and the official sentence-splitting rule."""

from __future__ import annotations

import re

import pytest

from tts_core.frontend.text_normalize import (
    MERGE_LEN,
    TOKEN_MAX_N,
    TOKEN_MIN_N,
    detect_language,
    is_only_punctuation,
    normalize_and_split,
    normalize_text,
    split_sentences,
)


def words(text: str) -> list[int]:
    """A simple whitespace tokenizer: one 'token' per word."""
    return [0] * len(text.split())


def no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_official_split_defaults() -> None:
    assert (TOKEN_MAX_N, TOKEN_MIN_N, MERGE_LEN) == (80, 60, 20)


@pytest.mark.parametrize(
    ("text", "language"),
    [("Hello there", "en"), ("你好", "zh"), ("Mixed 中文 text", "zh"), ("カタカナ only", "en"), ("", "en")],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 3 cats.", "I have three cats."),
        ("0 and 7 and 13 and 40 and 99", "zero and seven and thirteen and forty and ninety-nine"),
        ("It has 123 pages.", "It has one hundred and twenty-three pages."),
        ("1,000,000 people", "one million people"),
        ("1,005 and 2,310", "one thousand and five and two thousand three hundred and ten"),
        ("Pi is 3.14.", "Pi is three point one four."),
        ("0.5 litres", "zero point five litres"),
        ("It fell -2 degrees", "It fell minus two degrees"),
        ("Agent 007", "Agent zero zero seven"),
        ("Call 5551234567", "Call five five five one two three four five six seven"),
        ("Up 50% today, 3.5% yesterday", "Up fifty percent today, three point five percent yesterday"),
        ("In 1999 and 2024", "In nineteen ninety-nine and twenty twenty-four"),
        ("In 1905, 1900 and 2005", "In nineteen oh five, nineteen hundred and two thousand and five"),
        ("the 1990s", "the nineteen nineties"),
        ("the 1st, 2nd, 3rd, 4th, 11th, 12th, 21st and 100th", "the first, second, third, fourth, eleventh, twelfth, twenty-first and one hundredth"),
        ("It costs $5.", "It costs five dollars."),
        ("$1, $5.50, $0.99", "one dollar, five dollars and fifty cents, ninety-nine cents"),
        ("$2.5 million", "two point five million dollars"),
        ("£3 and €20", "three pounds and twenty euros"),
        ("Salt & pepper", "Salt and pepper"),
        ("At 10:30 or 7:05 or 9:00", "At ten thirty or seven oh five or nine o'clock"),
        ("pages 10-20", "pages ten to twenty"),
        ("an mp3 file", "an mp three file"),
        ("  too   many\n\nspaces\t here ", "too many spaces here"),
    ],
)  # fmt: skip
def test_english_normalisation(text: str, expected: str) -> None:
    assert normalize_text(text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我有3个苹果", "我有三个苹果"),
        ("10、15、20、110、1005", "十、十五、二十、一百一十、一千零五"),
        ("10000和100005和120000000", "一万和十万零五和一亿二千万"),
        ("共1,000,000人", "共一百万人"),
        ("圆周率是3.14", "圆周率是三点一四"),
        ("增长了50%", "增长了百分之五十"),
        ("下降3.5%", "下降百分之三点五"),
        ("2024年3月5日", "二零二四年三月五日"),
        ("他得了第1名", "他得了第一名"),
        ("一共¥100", "一共一百元"),
        ("售价$5", "售价五美元"),
        ("气温-5度", "气温负五度"),
        ("10:30出发", "十点三十分出发"),
        ("2:05到", "两点零五分到"),
        ("电话13812345678", "电话一三八一二三四五六七八"),
        ("编号007", "编号零零七"),
    ],
)
def test_chinese_numbers(text: str, expected: str) -> None:
    assert normalize_text(text, "zh") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你 好 世 界", "你好世界"),  # blanks between CJK go
        ("我用 iPhone 手机", "我用iPhone手机"),  # ... and next to CJK
        ("我说 hello world 了", "我说hello world了"),  # kept between two ASCII words
        ("第一行\n第二行", "第一行第二行"),
        ("结束了.", "结束了。"),
        ("A - B测试", "A，B测试"),
        ("面积5m²体积3m³", "面积五m平方体积三m立方"),
        ("（注意）【重要】`代码`", "注意重要代码"),
        ("等等——然后", "等等 然后"),
        ("我们去吃饭，", "我们去吃饭。"),
        ("苹果、香蕉、", "苹果、香蕉。"),
    ],
)
def test_chinese_punctuation_rules(text: str, expected: str) -> None:
    assert normalize_text(text, "zh") == expected


def test_markup_text_is_left_alone() -> None:
    text = "You are a helpful assistant.<|endofprompt|>I have 3 cats ."
    assert normalize_text(text) == text
    assert normalize_and_split(text, words) == [text]


def test_language_is_detected_and_checked() -> None:
    assert normalize_text("我有2个") == "我有二个"
    assert normalize_text("I have 2") == "I have two"
    with pytest.raises(ValueError, match="language"):
        normalize_text("hello", "fr")
    with pytest.raises(ValueError, match="language"):
        split_sentences("hello", words, "de")


def test_punctuation_only() -> None:
    assert is_only_punctuation("。！…") and is_only_punctuation(" ?! ") and is_only_punctuation("")
    assert not is_only_punctuation("a.") and not is_only_punctuation("好。")


def test_split_equal_sentences_by_hand() -> None:
    # 25 sentences of 7 words: pieces close at 77 (84 > 80 with 77 > 60); the 3-sentence tail (21 >= 20) stays.
    paragraph = " ".join(f"Sentence number {i} has exactly seven words." for i in range(25))
    assert [len(words(p)) for p in split_sentences(paragraph, words, "en")] == [77, 77, 21]
    # With 24 sentences the tail is 2 sentences = 14 < 20 words, so it joins the piece before.
    paragraph = " ".join(f"Sentence number {i} has exactly seven words." for i in range(24))
    assert [len(words(p)) for p in split_sentences(paragraph, words, "en")] == [77, 91]


def test_split_chinese_counts_characters() -> None:
    # 12 sentences of 10 characters: the piece closes at 80 (80 is not > 80, 90 is), the rest is 40.
    sentence = "这是一个十字的句子。"
    assert len(sentence) == 10
    paragraph = sentence * 12
    pieces = split_sentences(paragraph, words, "zh")
    assert [len(p) for p in pieces] == [80, 40]
    assert "".join(pieces) == paragraph


LONG_EN = (
    "The committee met on Tuesday to review the budget. After a long discussion, they agreed to fund two "
    "new projects! Did anyone expect that outcome? Few did; most members had argued for cuts: deep ones. "
    'The chair said "we will revisit this next year." Then the meeting ended... quietly. '
    "Reporters waited outside for hours, hoping for a statement that never came, while the rain kept falling "
    "over the square and the lights of the old town hall went out one by one as the evening turned into night. "
    "Short one. Another short one. And a final remark about the weather, which was grey."
)
LONG_ZH = (
    "今天早上我们在公园里散步，看到很多人在锻炼身体。有的人在跑步，有的人在打太极拳，还有的人在跳舞！"
    "你知道为什么大家都喜欢早上锻炼吗？因为早上的空气比较新鲜；而且一天的开始有一个好心情。"
    "他说：“明天我们再来。”我点了点头、笑了笑。"
    "后来我们去了附近的一家小饭馆吃早饭，那里的包子和豆浆都非常好吃，老板也很热情，一直问我们还要不要再加一点什么东西。"
    "好。"
)


@pytest.mark.parametrize(("text", "language"), [(LONG_EN, "en"), (LONG_ZH, "zh")])
@pytest.mark.parametrize(("max_n", "min_n", "merge"), [(80, 60, 20), (30, 15, 8), (12, 5, 3)])
def test_split_long_paragraph_keeps_text_and_limits(
    text: str, language: str, max_n: int, min_n: int, merge: int
) -> None:
    def length(piece: str) -> int:
        return len(piece) if language == "zh" else len(words(piece))

    pieces = split_sentences(text, words, language, token_max_n=max_n, token_min_n=min_n, merge_len=merge)
    assert pieces and no_space("".join(pieces)) == no_space(text)  # nothing lost, nothing added
    sentences = re.findall(r"[^.?!;:。？！；：、]+[.?!;:。？！；：、]*[\"”]?", text)
    longest_sentence = max(length(s) for s in sentences)
    for i, piece in enumerate(pieces):
        assert not is_only_punctuation(piece)
        # The official rule: a piece passes max_n only by the sentence that took it over min_n,
        # plus (for the last two) a tail shorter than merge_len.
        assert length(piece) <= max(max_n, min_n + longest_sentence) + (merge if i == len(pieces) - 1 else 0)
        if i < len(pieces) - 1:
            assert length(piece) > min_n  # a piece is only closed once it holds more than min_n


def test_split_adds_final_mark_and_drops_punctuation_pieces() -> None:
    assert split_sentences("No final mark here", words, "en") == ["No final mark here."]
    assert split_sentences("没有句号", words, "zh") == ["没有句号。"]
    assert split_sentences('He said "yes."', words, "en") == ['He said "yes."']
    tiny = {"token_max_n": 2, "token_min_n": 1, "merge_len": 0}
    assert split_sentences("Wow?! Really... yes. ... !", words, "en", **tiny) == [
        "Wow?! Really...",
        " yes. ...",
    ]
    assert split_sentences("。。好的。", words, "zh", **tiny) == ["好的。"]
    assert split_sentences("...", words, "en") == []


def test_split_keeps_decimals_times_and_urls_whole() -> None:
    tiny = {"token_max_n": 1, "token_min_n": 0, "merge_len": 0}
    text = "Visit example.com at 10:30 today. It is 3.5 m long."
    assert split_sentences(text, words, "en", **tiny) == [
        "Visit example.com at 10:30 today.",
        " It is 3.5 m long.",
    ]


def test_split_comma_option() -> None:
    text = "一二三四五，六七八九十，好的"
    assert split_sentences(text, words, "zh", token_max_n=5, token_min_n=1, merge_len=0) == [
        "一二三四五，六七八九十，好的。"
    ]
    assert split_sentences(
        text, words, "zh", token_max_n=5, token_min_n=1, merge_len=0, comma_split=True
    ) == [
        "一二三四五，",
        "六七八九十，",
        "好的。",
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_split_empty_input(text: str) -> None:
    assert split_sentences(text, words, "en") == []
    assert split_sentences(text, words, "zh") == []


def test_normalize_and_split_end_to_end() -> None:
    pieces = normalize_and_split("I paid $5 in 1999.   It was cheap", words)
    assert pieces == ["I paid five dollars in nineteen ninety-nine. It was cheap."]
    assert normalize_and_split("我有3个苹果", words) == ["我有三个苹果。"]
