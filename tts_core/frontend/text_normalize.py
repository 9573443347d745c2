"""Text normalisation and sentence splitting in front of the text tokenizer.

The official frontend (``cli/frontend.py`` ``text_normalize``) uses ttsfrd or wetext when installed and
otherwise only a few clean-up rules plus inflect for English digits. Neither ttsfrd nor wetext is used
here; instead this module spells numbers itself (integers, decimals, percentages, years, ordinals,
currency, clock times) in English words or Chinese characters, then applies the official clean-up rules
and the official ``split_paragraph`` merge rule. Everything is pure Python and cheap.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

# split_paragraph defaults as the official frontend calls it.
TOKEN_MAX_N = 80  # a piece is closed before it grows past this many tokens (zh: characters) ...
TOKEN_MIN_N = 60  # ... but only once it holds more than this many
MERGE_LEN = 20  # a last piece shorter than this is appended to the one before
COMMA_SPLIT = False  # official default: commas do not end a piece

LANGUAGES = ("zh", "en")
# contains_chinese: CJK Unified Ideographs only (kana/hangul alone count as "en", as officially).
_CJK = re.compile(r"[\u4e00-\u9fff]")
SENTENCE_ENDS = {
    "zh": ("。", "？", "！", "；", "：", "、", ".", "?", "!", ";"),
    "en": (".", "?", "!", ";", ":"),
}
COMMAS = ("，", ",")
# Closing quotes/brackets right after a sentence end stay with that sentence (official: " and ” only).
_CLOSERS = frozenset("\"'”’)）」』》]")
# Spelling digit strings as cardinals beyond this length reads phone numbers and ids as amounts;
# longer runs (unless written with thousands separators) are read digit by digit.
MAX_CARDINAL_DIGITS = 9
MAX_CARDINAL = 10**15  # above this, even grouped numbers are read digit by digit

_INT = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"  # plain or with thousands separators
_NO_SIGN_BEFORE = r"(?<![0-9A-Za-z.\-])"  # a '-' here is a minus sign, not a hyphen or range


def detect_language(text: str) -> str:
    """'zh' when the text holds a CJK ideograph (the official contains_chinese), else 'en'."""
    return "zh" if _CJK.search(text) else "en"


# ---------------------------------------------------------------- English number words
_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"), (1, ""))
_EN_ORDINAL = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip
_EN_CURRENCY = {  # symbol: (one, many, one sub-unit, many sub-units); sub-units need 2 decimals
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "￥": ("yen", "yen", None, None),
}


def _en_under_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")


def _en_under_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        words += ["and", _en_under_100(rest)] if hundreds else [_en_under_100(rest)]
    return " ".join(words)


def en_cardinal(n: int) -> str:
    """123 -> 'one hundred and twenty-three' (British 'and', as inflect; no commas)."""
    if n < 0:
        return "minus " + en_cardinal(-n)
    if n >= MAX_CARDINAL:
        return en_digits(str(n))
    if n == 0:
        return "zero"
    parts = [f"{_en_under_1000(n // v % 1000)} {name}".strip() for v, name in _EN_SCALES if n // v % 1000]
    if n >= 1000 and 0 < n % 1000 < 100:
        parts.insert(-1, "and")  # one thousand and five
    return " ".join(parts)


def en_ordinal(n: int) -> str:
    """21 -> 'twenty-first', 100 -> 'one hundredth'."""
    words = en_cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _EN_ORDINAL:
        return head + _EN_ORDINAL[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def en_year(n: int) -> str:
    """1999 -> 'nineteen ninety-nine', 1905 -> 'nineteen oh five', 2005 -> 'two thousand and five'."""
    high, low = divmod(n, 100)
    if 2000 <= n < 2010 or n % 1000 == 0:
        return en_cardinal(n)
    if low == 0:
        return f"{_en_under_100(high)} hundred"
    return f"{_en_under_100(high)} {'oh ' + _ONES[low] if low < 10 else _en_under_100(low)}"


def en_digits(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def _is_year(digits: str) -> bool:
    # "where sensible": plain 4-digit numbers 1100-2099 are read as years (also "1500 apples" ->
    # "fifteen hundred apples", still idiomatic); numbers with separators are cardinals.
    return len(digits) == 4 and 1100 <= int(digits) <= 2099


def _en_integer(text: str, years: bool = True) -> str:
    digits = text.replace(",", "")
    if len(digits) > 1 and digits[0] == "0":
        return en_digits(digits)  # 007, zip codes
    if "," not in text and len(digits) > MAX_CARDINAL_DIGITS:
        return en_digits(digits)
    return en_year(int(digits)) if years and _is_year(digits) else en_cardinal(int(digits))


def _en_decimal(whole: str, fraction: str | None) -> str:
    words = _en_integer(whole, years=False)
    return f"{words} point {en_digits(fraction)}" if fraction else words


def _en_money(m: re.Match) -> str:
    one, many, sub_one, sub_many = _EN_CURRENCY[m["cur"]]
    whole, frac, scale = m["int"], m["frac"], m["scale"]
    if scale:  # $2.5 million -> two point five million dollars
        return f"{_en_decimal(whole, frac)} {scale.lower()} {many}"
    amount = int(whole.replace(",", ""))
    if frac and len(frac) == 2 and sub_one:
        cents = int(frac)
        parts = [f"{en_cardinal(amount)} {one if amount == 1 else many}"] if amount or not cents else []
        if cents:
            parts.append(f"{en_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
        return " and ".join(parts)
    if frac:
        return f"{_en_decimal(whole, frac)} {many}"
    return f"{en_cardinal(amount)} {one if amount == 1 else many}"


def _en_time(m: re.Match) -> str:
    hour, minute = int(m[1]), int(m[2])
    if minute == 0:
        return f"{en_cardinal(hour)} o'clock"
    return f"{en_cardinal(hour)} {'oh ' + _ONES[minute] if minute < 10 else en_cardinal(minute)}"


def _en_decade(m: re.Match) -> str:
    words = en_year(int(m[1]))
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _spaced(m: re.Match, words: str) -> str:
    # "mp3" -> "mp three": keep spelled numbers from gluing onto neighbouring letters.
    before = " " if m.start() > 0 and _latin(m.string[m.start() - 1]) else ""
    after = " " if m.end() < len(m.string) and _latin(m.string[m.end()]) else ""
    return before + words + after


def _latin(c: str) -> bool:
    return c.isascii() and c.isalpha()


# Patterns shared by both languages; each rule list below is applied top to bottom, so money and
# percentages are spelled before their digits would be read as plain numbers.
_MONEY = rf"(?P<cur>[$£€¥￥])\s?(?P<int>{_INT})(?:\.(?P<frac>\d+))?"
_PERCENT = rf"({_INT})(?:\.(\d+))?\s?[%％]"
_TIME = r"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)(?![\d:])"
_RANGE = r"(?<![\d\-.])(\d{1,4})\s?[-–~]\s?(?=\d{1,4}(?![\d\-.]))"
_NEGATIVE = _NO_SIGN_BEFORE + r"-(?=\d)"
_DECIMAL = rf"({_INT})\.(\d+)"

_EN_SCALE = r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?"
_EN_RULES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(_MONEY + _EN_SCALE, re.IGNORECASE), lambda m: _spaced(m, _en_money(m))),
    (re.compile(_PERCENT), lambda m: _spaced(m, _en_decimal(m[1], m[2]) + " percent")),
    (re.compile(_TIME), lambda m: _spaced(m, _en_time(m))),
    (re.compile(rf"({_INT})(?:st|nd|rd|th)(?![A-Za-z])", re.IGNORECASE),
     lambda m: _spaced(m, en_ordinal(int(m[1].replace(",", ""))))),
    (re.compile(_RANGE), lambda m: m[1] + " to "),
    (re.compile(r"(?<!\d)(\d{4})'?s(?![A-Za-z])"), lambda m: _spaced(m, _en_decade(m))),
    (re.compile(_NEGATIVE), lambda m: "minus "),
    (re.compile(_DECIMAL), lambda m: _spaced(m, _en_decimal(m[1], m[2]))),
    (re.compile(_INT), lambda m: _spaced(m, _en_integer(m[0]))),
    (re.compile(r"\s*&\s*"), lambda m: " and "),
    (re.compile(r"(?<=\S)@(?=\S)"), lambda m: " at "),
)  # fmt: skip


# ---------------------------------------------------------------- Chinese number characters
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_SMALL = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
_ZH_LARGE = ((10**12, "万亿"), (10**8, "亿"), (10**4, "万"), (1, ""))
_ZH_CURRENCY = {"$": "美元", "£": "英镑", "€": "欧元", "¥": "元", "￥": "元"}


def _zh_group(n: int, first: bool) -> str:
    """1..9999 -> characters; ``first``: the number starts here, so 1x reads 十x, not 一十x."""
    out, zero = "", False
    for value, unit in _ZH_SMALL:
        digit = n // value % 10
        if digit == 0:
            zero = zero or bool(out)
            continue
        out += "零" if zero else ""
        zero = False
        out += unit if (value == 10 and digit == 1 and first and not out) else _ZH_DIGITS[digit] + unit
    return out


def zh_cardinal(n: int) -> str:
    """10 -> 十, 110 -> 一百一十, 1005 -> 一千零五, 100005 -> 十万零五, 120000000 -> 一亿二千万."""
    if n < 0:
        return "负" + zh_cardinal(-n)
    if n >= MAX_CARDINAL:
        return zh_digits(str(n))
    if n == 0:
        return "零"
    out, zero = "", False
    for value, unit in _ZH_LARGE:
        group = n // value % 10000
        if group == 0:
            zero = zero or bool(out)
            continue
        if out and (zero or group < 1000):
            out += "零"  # a skipped place inside the number is read once
        out += _zh_group(group, first=not out) + unit
        zero = False
    return out


def zh_digits(digits: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in digits)


def _zh_integer(text: str) -> str:
    digits = text.replace(",", "")
    if (len(digits) > 1 and digits[0] == "0") or ("," not in text and len(digits) > MAX_CARDINAL_DIGITS):
        return zh_digits(digits)
    return zh_cardinal(int(digits))


def _zh_decimal(whole: str, fraction: str | None) -> str:
    return _zh_integer(whole) + (f"点{zh_digits(fraction)}" if fraction else "")


def _zh_time(m: re.Match) -> str:
    hour, minute = int(m[1]), int(m[2])
    spoken_hour = "两" if hour == 2 else zh_cardinal(hour)  # 两点, not 二点
    if minute == 0:
        return f"{spoken_hour}点"
    return f"{spoken_hour}点{'零' if minute < 10 else ''}{zh_cardinal(minute)}分"


_ZH_RULES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(_MONEY), lambda m: _zh_decimal(m["int"], m["frac"]) + _ZH_CURRENCY[m["cur"]]),
    (re.compile(_PERCENT), lambda m: "百分之" + _zh_decimal(m[1], m[2])),
    (re.compile(_TIME), _zh_time),
    (re.compile(_RANGE), lambda m: m[1] + "到"),
    (re.compile(r"(?<!\d)(\d{4})(?=年)"), lambda m: zh_digits(m[1])),  # 2024年 -> 二零二四年
    (re.compile(_NEGATIVE), lambda m: "负"),
    (re.compile(_DECIMAL), lambda m: _zh_decimal(m[1], m[2])),
    (re.compile(_INT), lambda m: _zh_integer(m[0])),
)


# ---------------------------------------------------------------- clean-up and the public API
def _remove_blanks(text: str) -> str:
    # official replace_blank: a space survives only between two non-space ASCII characters.
    kept = []
    for i, c in enumerate(text):
        if c == " " and not (0 < i < len(text) - 1 and _ascii_word(text[i - 1]) and _ascii_word(text[i + 1])):
            continue
        kept.append(c)
    return "".join(kept)


def _ascii_word(c: str) -> bool:
    return c.isascii() and c != " "


def _zh_cleanup(text: str) -> str:
    """The official zh rules after text normalisation, in the official order."""
    text = _remove_blanks(text)
    text = text.replace("²", "平方").replace("³", "立方")
    text = text.replace(".", "。").replace(" - ", "，")
    for mark in ("（", "）", "【", "】", "`"):
        text = text.replace(mark, "")
    text = text.replace("——", " ")
    return re.sub(r"[，,、]+$", "。", text)


def _apply(rules: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...], text: str) -> str:
    for pattern, replace in rules:
        text = pattern.sub(replace, text)
    return text


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    return language


def normalize_text(text: str, language: str | None = None) -> str:
    """Spell numbers and symbols, collapse whitespace and apply the official zh punctuation rules.

    Text with ``<|...|>`` markup is returned unchanged (the official frontend skips it too).
    ``language`` None means :func:`detect_language`.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if "<|" in text and "|>" in text:
        return text
    language = _check_language(language or detect_language(text))
    text = re.sub(r"\s+", " ", text).strip()
    if language == "en":
        return re.sub(r" {2,}", " ", _apply(_EN_RULES, text)).strip()
    return _zh_cleanup(_apply(_ZH_RULES, text))


def is_only_punctuation(text: str) -> bool:
    """True for text made only of punctuation, symbols and white space (or empty)."""
    return all(c.isspace() or unicodedata.category(c)[0] in "PS" for c in text)


def _is_sentence_end(text: str, i: int, marks: tuple[str, ...]) -> bool:
    if text[i] not in marks:
        return False
    # NOTE: deviation from the official splitter: "3.5", "e.g.", "10:30" and URLs are not cut.
    nxt = text[i + 1] if i + 1 < len(text) else ""
    return not (text[i] in ".:" and nxt.isascii() and nxt.isalnum())


def _cut_at_marks(text: str, marks: tuple[str, ...]) -> list[str]:
    """Cut after each sentence end; runs like '?!' or '."' stay with their sentence."""
    pieces, start, i = [], 0, 0
    while i < len(text):
        if _is_sentence_end(text, i, marks):
            i += 1
            while i < len(text) and (text[i] in marks or text[i] in _CLOSERS):
                i += 1
            pieces.append(text[start:i])
            start = i
        else:
            i += 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def split_sentences(
    text: str,
    tokenize: Callable[[str], list[int]],
    language: str,
    token_max_n: int = TOKEN_MAX_N,
    token_min_n: int = TOKEN_MIN_N,
    merge_len: int = MERGE_LEN,
    comma_split: bool = COMMA_SPLIT,
) -> list[str]:
    """Cut a paragraph into synthesis pieces (the official split_paragraph merge rule).

    Length is characters for zh and ``len(tokenize(piece))`` for en. Sentences are appended to the
    current piece; it is closed before a sentence would take it past ``token_max_n`` but only once it
    holds more than ``token_min_n`` (so a piece can exceed ``token_max_n`` by up to one sentence), and a
    last piece shorter than ``merge_len`` joins the one before. A final sentence mark is added when the
    text lacks one; pieces of punctuation only are dropped. Empty text gives [].
    """
    language = _check_language(language)
    for name, value in (("token_max_n", token_max_n), ("token_min_n", token_min_n), ("merge_len", merge_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not text.strip():
        return []

    def length(piece: str) -> int:
        return len(piece) if language == "zh" else len(tokenize(piece))

    marks = SENTENCE_ENDS[language] + (COMMAS if comma_split else ())
    text = text.rstrip()
    body = text
    while body and body[-1] in _CLOSERS:
        body = body[:-1]
    if not body or body[-1] not in marks:
        text += "。" if language == "zh" else "."

    pieces: list[str] = []
    current = ""
    for sentence in _cut_at_marks(text, marks):
        if current and length(current + sentence) > token_max_n and length(current) > token_min_n:
            pieces.append(current)
            current = ""
        current += sentence
    if current:
        if pieces and length(current) < merge_len:
            pieces[-1] += current
        else:
            pieces.append(current)
    return [piece for piece in pieces if not is_only_punctuation(piece)]


def normalize_and_split(
    text: str, tokenize: Callable[[str], list[int]], language: str | None = None
) -> list[str]:
    """The official ``text_normalize(split=True)``: normalise, then split; ``<|...|>`` text stays whole."""
    if "<|" in text and "|>" in text:
        return [text]
    language = _check_language(language or detect_language(text))
    return split_sentences(normalize_text(text, language), tokenize, language)


def segment_text(text: str, encode: Callable[[str], list[int]]) -> tuple[list[list[int]], tuple[str, ...]]:
    """(text token ids per synthesis piece, the normalised pieces) of a non-empty text: language
    detected, normalised, split as the official frontend does; ValueError when nothing is left to speak."""
    language = detect_language(text)
    # split_sentences drops punctuation-only pieces, so an empty list means nothing to speak.
    pieces = split_sentences(normalize_text(text, language), encode, language)
    kept = [(p, ids) for p in pieces if (ids := encode(p))]
    if not kept:
        raise ValueError("the text has nothing to speak after normalisation (only punctuation?)")
    return [ids for _, ids in kept], tuple(p for p, _ in kept)
