"""Rating-sheet exports: read back with openpyxl/csv, no cell may hold or start a formula."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from eval.serving.ratings_schema import COLUMNS
from eval.statistics import analysis, report, sheets
from eval.statistics.ratings_io import read_ratings

BASE, FAST = "float16-n10", "bfloat16-n5"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NASTY = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\rx", "a\x07b"]


def _ratings() -> pd.DataFrame:
    rows = []
    for i in range(4):
        for j in range(3):
            row = dict.fromkeys(COLUMNS, "")
            row |= {
                "schema_version": 1,
                "listener_id": NASTY[i],
                "trial_id": f"{i}-{j}",
                "mode": "blind",
                "text_id": f"t{j}",
                "text": NASTY[(i + j) % len(NASTY)],
                "a_config": BASE,
                "b_config": FAST,
                "score_a": 4 + (i + j) % 2,
                "score_b": 3 + j % 2,
                "preference": "A",
            }
            rows.append(row)
    return read_ratings(pd.DataFrame(rows))


def test_neutralise():
    for text in NASTY[:6]:
        assert sheets.neutralise(text) == "'" + text
    assert sheets.neutralise("hello") == "hello"
    assert sheets.neutralise(-2.5) == -2.5  # numbers are numbers, not text


def test_xlsx_has_the_sheets_and_no_formula(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    ratings = _ratings()
    summary = analysis.summarize(ratings, BASE)
    path = sheets.write_xlsx(summary, ratings, tmp_path / "sub" / "sheet.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == list(sheets.SHEET_NAMES)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(TRIGGERS), (sheet.title, cell.coordinate)
                    assert "\x07" not in cell.value
    raw = book["ratings"]
    assert raw.max_row == 1 + len(ratings)
    header = [c.value for c in raw[1]]
    assert header[: len(COLUMNS)] == list(COLUMNS)
    listener_col = header.index("listener_id")
    assert {raw.cell(r, listener_col + 1).value for r in range(2, raw.max_row + 1)} == {
        "'" + t for t in NASTY[:4]
    }
    summ = book["summary"]
    head = [c.value for c in summ[1]]
    values = {summ.cell(r, 1).value: [c.value for c in summ[r]] for r in range(2, summ.max_row + 1)}
    assert values[FAST][head.index("mos")] == pytest.approx(summary.config(FAST).mos)  # a number, not text
    assert values[BASE][head.index("verdict")] == "baseline"
    assert book["listeners"].max_row == 1 + 4


def test_csv_sheet_has_no_formula(tmp_path):
    ratings = _ratings()
    path = sheets.write_rating_sheet_csv(ratings, tmp_path / "ratings.csv")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][: len(COLUMNS)] == list(COLUMNS)
    assert len(rows) == 1 + len(ratings)
    for row in rows:
        for cell in row:
            assert not cell.startswith(TRIGGERS), cell
    # The exported log is itself a valid ratings log again (the guard is stripped on reading).
    assert read_ratings(path)["listener_id"].tolist() == ratings["listener_id"].tolist()


def test_cli_writes_xlsx_and_csv(tmp_path):
    pytest.importorskip("openpyxl")
    log = tmp_path / "ratings.csv"
    sheets.write_rating_sheet_csv(_ratings(), log)
    code = report.main(
        [
            str(log),
            "--baseline",
            BASE,
            "--xlsx",
            str(tmp_path / "r.xlsx"),
            "--csv",
            str(tmp_path / "s.csv"),
            "--bootstrap",
            "200",
        ]
    )
    assert code == 0
    assert (tmp_path / "r.xlsx").stat().st_size > 0
    assert pd.read_csv(tmp_path / "s.csv")["config"].tolist() == [BASE, FAST]
