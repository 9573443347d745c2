"""The screen's view of the input text: what the ASR is scored against and how long it should take.

* :func:`scoring_text`: the input text as the pipeline normalises it (numbers spelled out by
  :func:`tts_core.frontend.text_normalize.normalize_text`), then lower-cased and stripped of punctuation,
  so that an ASR transcript can be compared word by word (English) or character by character
  (Chinese);
* :func:`syllable_count`: the syllables a speaker has to say (English: vowel groups per word,
  Chinese: one per character), for the speech-rate check;
* :func:`error_rate`: WER or CER with jiwer.
"""

from __future__ import annotations

import re
import unicodedata

from tts_core.frontend.text_normalize import detect_language, normalize_text

METRIC_WER = "wer"
METRIC_CER = "cer"
METRIC_BY_LANGUAGE = {"en": METRIC_WER, "zh": METRIC_CER}

_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def language_of(text: str, language: str | None) -> str:
    """``language`` when given ("en" | "zh"), else the pipeline's own detection."""
    if language is None:
        return detect_language(text)
    if language not in METRIC_BY_LANGUAGE:
        raise ValueError(f"language must be one of {sorted(METRIC_BY_LANGUAGE)}, got {language!r}")
    return language


def _plain(text: str) -> str:
    """Lower case, letters/digits/CJK/apostrophes kept, everything else a space (NFKC first)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    kept = [ch if ch.isalnum() or ch == "'" else " " for ch in text]
    # An apostrophe counts only inside a word ("don't"), not as a quote mark.
    return re.sub(r"(?<![a-z])'|'(?![a-z])", " ", "".join(kept))


def scoring_text(text: str, language: str) -> str:
    """The text an ASR transcript is scored against (also applied to the transcript itself).

    English: normalised, lower case, words separated by single spaces. Chinese: normalised, CJK
    characters and Latin words only, characters separated by spaces (so jiwer's CER sees characters).
    The transcript goes through the same function, so digits a Whisper model writes ("20") are
    spelled as the input text's are ("twenty").
    """
    plain = _plain(normalize_text(text, language))
    if language == "zh":
        return " ".join(ch for ch in plain if not ch.isspace())
    return " ".join(plain.split())


def _english_syllables(word: str) -> int:
    groups = len(_VOWEL_GROUP.findall(word))
    # A final silent "e" ("make", "clue") is not a syllable; "-le" after a consonant ("little") is.
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    return max(groups, 1)


def syllable_count(text: str, language: str) -> int:
    """Syllables of the normalised ``text``: CJK characters plus English vowel groups per word."""
    plain = _plain(normalize_text(text, language))
    cjk = len(_CJK.findall(plain))
    return cjk + sum(_english_syllables(w) for w in _LATIN_WORD.findall(plain))


def error_rate(reference: str, hypothesis: str) -> float:
    """(S + D + I) / N over space-separated units (words, or characters for Chinese), via jiwer.

    reference must hold at least one unit; an empty hypothesis scores 1.0 (everything deleted).
    """
    import jiwer

    if not reference.split():
        raise ValueError("the reference text has no words to score against")
    if not hypothesis.split():
        return 1.0
    return float(jiwer.wer(reference, hypothesis))
