"""Reading and validating a ratings log (the CSV of eval/ratings_schema.py) into a pandas DataFrame.

The statistics trust what this module returns: every row has a known schema version, a listener, a
text, two configuration labels, two integer scores in 1..5 and a preference in A/B/none. Anything
else is refused with a :class:`RatingsFormatError` whose message names the column (and the row)
so that a person can fix the file; the report CLI turns it into exit code 2 without a traceback.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eval.ratings_schema import COLUMNS, MODES, PREFERENCES, SCHEMA_VERSION

KNOWN_SCHEMA_VERSIONS: tuple[int, ...] = (SCHEMA_VERSION,)
SCORE_MIN = 1
SCORE_MAX = 5
SCORE_COLUMNS: tuple[str, ...] = ("score_a", "score_b")
# Columns that must hold a non-empty value: they identify what was rated, by whom, on which text.
REQUIRED_TEXT_COLUMNS: tuple[str, ...] = ("listener_id", "text_id", "a_config", "b_config")
# The app prefixes a single quote to strings that a spreadsheet would run as a formula; a leading
# quote followed by one of these characters is that guard, not data.
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
MAX_ERRORS_LISTED = 5


class RatingsFormatError(ValueError):
    """The file or table is not a valid ratings log; the message says which column/row and why."""


def strip_formula_guard(value: str) -> str:
    """``"'=1+2"`` -> ``"=1+2"``; any other string is returned unchanged."""
    if len(value) >= 2 and value[0] == "'" and value[1] in FORMULA_TRIGGERS:
        return value[1:]
    return value


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as str (no NA parsing: a text "NA" or the preference "none" stays text)."""
    if not path.is_file():
        raise RatingsFormatError(f"ratings log not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            lines = [row for row in csv.reader(f) if row]  # blank lines carry nothing
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RatingsFormatError(f"{path} cannot be read as a CSV ratings log: {exc}") from None
    if not lines:
        raise RatingsFormatError(f"{path} is empty, not a ratings log (no header row)")
    header, rows = lines[0], lines[1:]
    _check_header(header, str(path))
    ragged = np.array([len(r) != len(header) for r in rows], dtype=bool)
    if ragged.any():
        first = rows[int(np.flatnonzero(ragged)[0])]
        raise RatingsFormatError(
            f"{path}: {_row_list(ragged)} have {len(first)} fields where the header has {len(header)} "
            "(a torn or hand-edited line?)"
        )
    return pd.DataFrame(rows, columns=header, dtype=str)


def _check_header(columns: Sequence[str], where: str) -> None:
    present = set(columns)
    missing = [c for c in COLUMNS if c not in present]
    if len(missing) == len(COLUMNS):
        raise RatingsFormatError(
            f"{where} is not a ratings log: its header has none of the expected columns "
            f"({', '.join(COLUMNS[:4])}, ...); first columns found: {list(columns)[:4]}"
        )
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise RatingsFormatError(f"{where} is missing column(s) {names} of the ratings log schema")


def _row_list(mask: np.ndarray) -> str:
    """'data rows 3, 7, 9' (1-based data rows, header not counted), at most MAX_ERRORS_LISTED."""
    rows = (np.flatnonzero(mask) + 1).tolist()
    shown = ", ".join(str(r) for r in rows[:MAX_ERRORS_LISTED])
    more = f" and {len(rows) - MAX_ERRORS_LISTED} more" if len(rows) > MAX_ERRORS_LISTED else ""
    return f"data row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _integers(table: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Column parsed as integers ('4' and '4.0' are 4); a clear error for text or fractions."""
    raw = table[column].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        first = raw[bad].iloc[0]
        raise RatingsFormatError(
            f"{where}: column {column!r} must hold integers; {_row_list(bad)} hold e.g. {first!r}"
        )
    return values.astype(np.int64)


def validate_ratings(table: pd.DataFrame, where: str = "ratings table") -> pd.DataFrame:
    """Check a raw ratings table and return a clean copy.

    Returns a DataFrame with every schema column; text columns are ``str`` with the formula guard
    removed, ``schema_version``/``score_a``/``score_b`` are ``int64``. Extra columns are kept.
    Raises :class:`RatingsFormatError` naming the column for: missing columns, no rows, an unknown
    schema version, an empty listener/text/config, scores that are not integers in 1..5, and a
    preference or mode outside the schema's values.
    """
    _check_header([str(c) for c in table.columns], where)
    if len(table) == 0:
        raise RatingsFormatError(f"{where} has a header but no ratings")
    out = table.reset_index(drop=True).copy()
    for column in out.columns:
        if column in ("schema_version", *SCORE_COLUMNS):
            continue
        out[column] = out[column].astype(str).map(strip_formula_guard)

    versions = _integers(out, "schema_version", where)
    unknown = ~np.isin(versions, KNOWN_SCHEMA_VERSIONS)
    if unknown.any():
        raise RatingsFormatError(
            f"{where}: unknown schema_version {int(versions[unknown][0])} in {_row_list(unknown)} "
            f"(this reader knows {', '.join(map(str, KNOWN_SCHEMA_VERSIONS))})"
        )
    out["schema_version"] = versions

    for column in REQUIRED_TEXT_COLUMNS:
        out[column] = out[column].str.strip()
        empty = (out[column] == "").to_numpy()
        if empty.any():
            raise RatingsFormatError(f"{where}: column {column!r} is empty in {_row_list(empty)}")

    for column in SCORE_COLUMNS:
        scores = _integers(out, column, where)
        outside = (scores < SCORE_MIN) | (scores > SCORE_MAX)
        if outside.any():
            raise RatingsFormatError(
                f"{where}: column {column!r} must be in {SCORE_MIN}..{SCORE_MAX}; "
                f"{_row_list(outside)} hold e.g. {int(scores[outside][0])}"
            )
        out[column] = scores

    for column, allowed in (("preference", PREFERENCES), ("mode", MODES)):
        out[column] = out[column].str.strip()
        bad = ~out[column].isin(allowed).to_numpy()
        if bad.any():
            raise RatingsFormatError(
                f"{where}: column {column!r} must be one of {list(allowed)}; "
                f"{_row_list(bad)} hold e.g. {out[column][bad].iloc[0]!r}"
            )
    return out


def read_ratings(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A validated ratings DataFrame from a CSV path (or an in-memory table), see :func:`validate_ratings`."""
    if isinstance(source, pd.DataFrame):
        return validate_ratings(source)
    path = Path(source)
    return validate_ratings(_read_csv(path), where=str(path))


def drop_duplicate_trials(ratings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first judgement of each non-empty ``trial_id`` (a trial is rated at most once).

    Returns ``(table, n_dropped)``; rows with an empty trial_id are all kept.
    """
    has_id = ratings["trial_id"] != ""
    duplicated = has_id & ratings.duplicated(subset="trial_id", keep="first")
    return ratings.loc[~duplicated].reset_index(drop=True), int(duplicated.sum())


def drop_repeated_rows(ratings: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """Drop judgements WITHOUT a trial_id that repeat an earlier row field for field.

    Every column but ``timestamp_utc`` is compared (a row pasted or appended twice differs at most
    in its time stamp). Rows with a trial_id are left to :func:`drop_duplicate_trials`. Returns
    ``(table, dropped)``, dropped the 1-based data row numbers of the removed repeats.
    """
    compared = [c for c in ratings.columns if c != "timestamp_utc"]
    repeated = (ratings["trial_id"] == "") & ratings.duplicated(subset=compared, keep="first")
    dropped = (np.flatnonzero(repeated.to_numpy()) + 1).tolist()
    return ratings.loc[~repeated].reset_index(drop=True), dropped


def configs_present(ratings: pd.DataFrame) -> list[str]:
    """Sorted configuration labels that occur on either side of the log."""
    return sorted(set(ratings["a_config"]) | set(ratings["b_config"]))
