"""Reading and validating a ratings log (the CSV of eval/serving/ratings_schema.py) into a pandas DataFrame.

The statistics trust what this module returns: every row has a known schema version, a listener, a
text, two configuration labels, two integer scores in 1..5 and a preference in A/B/none. Anything
else is refused with a :class:`RatingsFormatError` whose message names the column (and the row)
so that a person can fix the file; the report CLI turns it into exit code 2 without a traceback.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from eval.serving.ratings_schema import (
    ADDED_IN_V2,
    ADDED_IN_V3,
    FORMULA_PREFIXES,
    MODES,
    PREFERENCES,
    SCORE_LABELS,
    V1_COLUMNS,
    V1_LABEL_BACKEND_SUFFIXES,
)
from tts_core.config_id import DTYPE_NAMES, ConfigId

KNOWN_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3)
SIDE_KEYS: tuple[str, ...] = ("a", "b")
SCORE_MIN = min(SCORE_LABELS)
SCORE_MAX = max(SCORE_LABELS)
SCORE_COLUMNS: tuple[str, ...] = ("score_a", "score_b")
# Columns that must hold a non-empty value: they identify what was rated, by whom, on which text.
REQUIRED_TEXT_COLUMNS: tuple[str, ...] = ("listener_id", "text_id", "a_config", "b_config")
# The app prefixes a single quote to strings that a spreadsheet would run as a formula; a leading
# quote followed by one of FORMULA_PREFIXES is that guard, not data (see unguard below).
MAX_ERRORS_LISTED = 5


class RatingsFormatError(ValueError):
    """The file or table is not a valid ratings log; the message says which column/row and why."""


def strip_formula_guard(value: str) -> str:
    """``"'=1+2"`` -> ``"=1+2"``; any other string is returned unchanged."""
    if len(value) >= 2 and value[0] == "'" and value[1] in FORMULA_PREFIXES:
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
    """Every column of the oldest known schema must be there (later additions may be absent)."""
    present = set(columns)
    missing = [c for c in V1_COLUMNS if c not in present]
    if len(missing) == len(V1_COLUMNS):
        raise RatingsFormatError(
            f"{where} is not a ratings log: its header has none of the expected columns "
            f"({', '.join(V1_COLUMNS[:4])}, ...); first columns found: {list(columns)[:4]}"
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
    for column in (*ADDED_IN_V2, *ADDED_IN_V3):
        if column not in out.columns:
            out[column] = ""
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
    return _count_configs(out)


def counted_label(logged: str, dtype_ran: str) -> tuple[str, str]:
    """(the configuration a judgement is counted under, why it differs from the logged label or "").

    The rule, applied to every reader of a log (report, sheets, planner, Results tab):

    * a label of schema version 1 that carries a flow backend (``float16-n10-torch-cudagraph``)
      names the configuration without it (``float16-n10``): the backend is a record of what ran,
      not part of the identity;
    * labels are written canonically (``fp16-n10`` -> ``float16-n10``);
    * a judgement whose clip ran in another dtype than its label asks for (a visible fallback in
      the app, e.g. bfloat16 on a device without it) is counted as the configuration that was
      heard, ``<dtype that ran>-n<steps>``, never as the one asked for;
    * a label that is not a configuration label at all (e.g. clips of another system) is kept as
      it is.
    """
    stem = logged
    note = ""
    for suffix in V1_LABEL_BACKEND_SUFFIXES:
        if stem.endswith(suffix):
            stem, note = stem[: -len(suffix)], f"backend {suffix[1:]!r} dropped from the label"
            break
    try:
        config = ConfigId.parse(stem)
    except ValueError:
        return logged, ""
    if dtype_ran in DTYPE_NAMES and dtype_ran != config.dtype:
        note = f"asked for {config.dtype}, ran {dtype_ran}: counted as what was heard"
        config = replace(config, dtype=dtype_ran)
    elif not note and config.label != logged:
        note = "label written canonically"
    return config.label, note


def _count_configs(table: pd.DataFrame) -> pd.DataFrame:
    """``a_config``/``b_config`` as counted (see :func:`counted_label`); the labels as logged stay in
    ``a_config_logged``/``b_config_logged`` and the reason of any change in ``a_config_note``/..."""
    for side in SIDE_KEYS:
        logged = table[f"{side}_config"].tolist()
        pairs = [counted_label(lbl, d.strip()) for lbl, d in zip(logged, table[f"{side}_dtype"])]
        table[f"{side}_config_logged"] = logged
        table[f"{side}_config"] = [p[0] for p in pairs]
        table[f"{side}_config_note"] = [p[1] for p in pairs]
    return table


def config_notes(table: pd.DataFrame) -> list[str]:
    """One line per relabelling rule that changed labels of ``table``, with the number of clips."""
    counts: dict[tuple[str, str, str], int] = {}
    for side in SIDE_KEYS:
        changed = table[f"{side}_config_note"] != ""
        for key in zip(
            table.loc[changed, f"{side}_config_logged"],
            table.loc[changed, f"{side}_config"],
            table.loc[changed, f"{side}_config_note"],
        ):
            counts[key] = counts.get(key, 0) + 1
    return [
        f"{n} clip rating(s) logged as {logged!r} counted as {counted!r} ({why})"
        for (logged, counted, why), n in sorted(counts.items())
    ]


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
