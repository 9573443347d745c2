"""Rating-sheet exports (XLSX workbook, CSV tables) that are safe to open in a spreadsheet.

Listener ids and texts are typed by people, so a cell like ``=HYPERLINK(...)`` or ``+cmd|...`` must
never reach a spreadsheet as a formula (CSV/formula injection, OWASP). Every text cell that starts
with ``= + - @``, tab or CR gets a leading single quote, and characters that XML cannot hold are
removed; numbers stay numbers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from eval.statistics.ratings_io import FORMULA_PREFIXES, read_ratings
from eval.statistics.summary import ReportSummary, method_descriptions

HEADER_FONT_BOLD = True
MAX_COLUMN_WIDTH = 60  # characters; long texts wrap instead of making a huge column
SHEET_NAMES = ("summary", "ratings", "listeners", "preferences", "report")


def neutralise(value: object) -> object:
    """Text that a spreadsheet would evaluate gets a leading ``'``; anything else is unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _cell_value(value: object) -> object:
    """A value openpyxl/csv can store: numbers as numbers, NaN as empty, text neutralised."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # control characters XML cannot hold

    return neutralise(ILLEGAL_CHARACTERS_RE.sub("", str(value)))


def summary_table(summary: ReportSummary) -> pd.DataFrame:
    """One row per configuration with the fields of the JSON report."""
    return pd.DataFrame([asdict(c) for c in summary.configs])


def listener_table(summary: ReportSummary) -> pd.DataFrame:
    """One row per listener: counts, mean/sd score, baseline/anchor means, screening flags."""
    rows = [asdict(s) | {"flags": ", ".join(s.flags)} for s in summary.listeners]
    return pd.DataFrame(rows)


def preference_table(summary: ReportSummary) -> pd.DataFrame:
    """One row per configuration pair, shares with their interval bounds."""
    return pd.DataFrame(summary.to_json_dict()["preferences"])


def report_table(summary: ReportSummary) -> pd.DataFrame:
    """Key/value rows: the parameters, methods and warnings of the analysis."""
    items: list[tuple[str, object]] = [
        ("baseline", summary.baseline),
        ("margin", summary.options.margin),
        ("anchor", summary.anchor or ""),
        ("confidence", summary.options.confidence),
        ("seed", summary.options.seed),
        ("method", summary.options.method),
        ("bootstrap replicates", summary.options.n_boot if summary.options.uses_bootstrap else ""),
        ("judgements", summary.n_judgements),
        ("rows not counted: repeated trial_id", summary.n_repeated_trial_ids),
        ("rows not counted: repeated without trial_id", summary.n_repeated_rows),
        ("listeners", summary.n_listeners),
        ("texts", summary.n_texts),
    ]
    items += [(f"method: {k}", v) for k, v in method_descriptions(summary.options.method).items()]
    items += [("warning", w) for w in summary.warnings]
    return pd.DataFrame(items, columns=["key", "value"])


def _rows(table: pd.DataFrame) -> Iterable[list[object]]:
    yield [_cell_value(str(c)) for c in table.columns]
    for record in table.itertuples(index=False, name=None):
        yield [_cell_value(v) for v in record]


def write_xlsx(summary: ReportSummary, ratings: pd.DataFrame | str | Path, path: str | Path) -> Path:
    """Workbook with sheets summary, ratings (raw log), listeners, preferences and report.

    ``ratings`` is the validated log (or its path). Returns the path written.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    raw = ratings if isinstance(ratings, pd.DataFrame) else read_ratings(ratings)
    tables = {
        "summary": summary_table(summary),
        "ratings": raw,
        "listeners": listener_table(summary),
        "preferences": preference_table(summary),
        "report": report_table(summary),
    }
    book = Workbook()
    book.remove(book.active)
    for name in SHEET_NAMES:
        sheet = book.create_sheet(name)
        for row in _rows(tables[name]):
            sheet.append(row)
        for cell in sheet[1]:
            cell.font = Font(bold=HEADER_FONT_BOLD)
        sheet.freeze_panes = "A2"
        for column in sheet.columns:
            width = max((len(str(c.value)) for c in column if c.value is not None), default=8)
            sheet.column_dimensions[column[0].column_letter].width = min(MAX_COLUMN_WIDTH, width + 2)
            if width > MAX_COLUMN_WIDTH:
                for cell in column:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    book.save(out)
    return out


def write_rating_sheet_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Any of the tables above (or the ratings log) as a UTF-8 CSV with neutralised text cells."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for row in _rows(table):
            writer.writerow(["" if v is None else v for v in row])
    return out
