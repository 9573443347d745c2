"""The append-only ratings CSV: read back with the csv module, under threads and processes, after crashes."""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import re
import threading
from pathlib import Path

import pytest

from eval.serving.ratings import DuplicateRatingError, RatingsFileError, RatingsStore
from eval.serving.ratings_schema import COLUMNS, SCHEMA_VERSION
from tests.conftest import judgement

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def test_new_file_gets_header_and_rows_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ratings.csv"
    store = RatingsStore(path)
    store.append(judgement("t1"))
    store.append(judgement("t2", text='He said "yes", then left.'))
    header, rows = read_csv(path)
    assert header == list(COLUMNS)
    assert [r["trial_id"] for r in rows] == ["t1", "t2"]
    assert rows[1]["text"] == 'He said "yes", then left.'
    assert all(r["schema_version"] == str(SCHEMA_VERSION) for r in rows)
    assert all(ISO_UTC.match(r["timestamp_utc"]) for r in rows)
    assert rows[0]["score_a"] == "4" and rows[0]["preference"] == "A" and rows[0]["shown_first"] == "B"
    # A second store on the same file sees the rows and the file still has one header.
    assert [r["trial_id"] for r in RatingsStore(path).rows()] == ["t1", "t2"]
    assert path.read_text(encoding="utf-8").count("schema_version,") == 1


def test_duplicate_trial_refused_across_stores(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    RatingsStore(path).append(judgement("t1"))
    other = RatingsStore(path)  # as a second process would see it
    with pytest.raises(DuplicateRatingError):
        other.append(judgement("t1", listener="bob"))
    assert len(read_csv(path)[1]) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"score_a": 6}, "score_a"),
        ({"score_b": "x"}, "score_b"),
        ({"preference": "left"}, "preference"),
        ({"mode": "other"}, "mode"),
        ({"shown_first": "C"}, "shown_first"),
        ({"listener_id": "  "}, "listener_id"),
        ({"bogus": 1}, "bogus"),
        ({"timestamp_utc": "now"}, "timestamp_utc"),
        ({"text": "x" * 5000}, "text"),
    ],
)
def test_bad_rows_refused_and_nothing_written(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "r.csv"
    store = RatingsStore(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        store.append({**judgement("t1"), **change})
    assert path.read_bytes() == before


def test_formula_injection_and_newlines_are_neutralised(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    store = RatingsStore(path)
    store.append(judgement("t1", listener='=HYPERLINK("http://x")', text="+1 line one\nline two\r\n"))
    store.append(judgement("t2", listener="@SUM(A1)", text="-2\tminus"))
    store.append(judgement("t3", listener="\tbob", text="plain = fine"))
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 5 and lines[-1] == b""  # header + 3 rows, one physical line each
    _, rows = read_csv(path)
    assert rows[0]["listener_id"] == '\'=HYPERLINK("http://x")'
    assert rows[0]["text"] == "'+1 line one line two "  # CRLF -> one space
    assert rows[1]["listener_id"] == "'@SUM(A1)" and rows[1]["text"] == "'-2\tminus"
    assert rows[2]["listener_id"] == "'\tbob" and rows[2]["text"] == "plain = fine"
    for row in rows:
        for column in ("listener_id", "text"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r"))
    # Resume lookups take the raw listener id.
    assert store.rated_trial_ids("@SUM(A1)") == {"t2"}


def test_foreign_csv_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    original = b"name,score\nbob,5\nalice"  # not ours, and no final newline
    path.write_bytes(original)
    with pytest.raises(RatingsFileError, match="not a ratings log"):
        RatingsStore(path)
    assert path.read_bytes() == original
    assert list(tmp_path.iterdir()) == [path]


def test_malformed_row_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    RatingsStore(path).append(judgement("t1"))
    with open(path, "a", encoding="utf-8") as f:
        f.write("1,2,3\n")
    original = path.read_bytes()
    with pytest.raises(RatingsFileError, match="line 3"):
        RatingsStore(path)
    assert path.read_bytes() == original


def test_torn_last_line_is_quarantined(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.csv"
    store = RatingsStore(path)
    store.append(judgement("t1"))
    store.append(judgement("t2"))
    good = path.read_bytes()
    torn = b'1,2026-01-01T00:00:00.000Z,carol,s9,t3,blind,en_01,"half a ro'
    with open(path, "ab") as f:  # a crash in the middle of a write
        f.write(torn)
    with caplog.at_level("WARNING"):
        reopened = RatingsStore(path)
    assert "torn line" in caplog.text
    assert path.read_bytes() == good  # earlier rows byte for byte
    assert [p.read_bytes() for p in reopened.quarantined] == [torn]
    reopened.append(judgement("t3"))
    _, rows = read_csv(path)
    assert [r["trial_id"] for r in rows] == ["t1", "t2", "t3"]


def test_torn_line_from_another_writer_is_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    store = RatingsStore(path)
    store.append(judgement("t1"))
    with open(path, "ab") as f:  # another process died mid-write after we opened the file
        f.write(b"1,2026")
    store.append(judgement("t2"))
    _, rows = read_csv(path)
    assert [r["trial_id"] for r in rows] == ["t1", "t2"]
    assert len(store.quarantined) == 1


def test_threads_share_one_store(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    store = RatingsStore(path)

    def work(k: int) -> None:
        for i in range(25):
            store.append(judgement(f"th{k}-{i}", listener=f"l{k}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, rows = read_csv(path)
    assert sorted(r["trial_id"] for r in rows) == sorted(f"th{k}-{i}" for k in range(4) for i in range(25))


def _process_writer(path: str, k: int, n: int, barrier) -> None:
    store = RatingsStore(path)
    barrier.wait()
    long_text = f"process {k}, " + 'a long sentence with commas, quotes " and 中文 ' * 20
    for i in range(n):
        store.append(judgement(f"p{k}-{i}", listener=f"proc{k}", text=long_text))
    # Every process tries one shared trial id; exactly one must win.
    with contextlib.suppress(DuplicateRatingError):
        store.append(judgement("shared", listener=f"proc{k}"))


def test_processes_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    n_proc, n_rows = 4, 50
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n_proc)
    procs = [ctx.Process(target=_process_writer, args=(str(path), k, n_rows, barrier)) for k in range(n_proc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    header, rows = read_csv(path)
    assert header == list(COLUMNS)
    ids = [r["trial_id"] for r in rows]
    assert len(rows) == n_proc * n_rows + 1
    assert ids.count("shared") == 1
    assert sorted(i for i in ids if i != "shared") == sorted(
        f"p{k}-{i}" for k in range(n_proc) for i in range(n_rows)
    )
    for r in rows:
        if r["trial_id"] != "shared":
            assert r["text"].startswith(f"process {r['listener_id'][4:]}, ")
            assert r["text"].endswith("中文 ")
    # Per process, rows appear in the order they were written.
    for k in range(n_proc):
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"p{k}-")]
        assert mine == sorted(mine)


def test_a_schema_2_log_is_read_and_never_appended_to(tmp_path: Path) -> None:
    from eval.serving.ratings_schema import ADDED_IN_V3, V2_COLUMNS
    from eval.statistics.ratings_io import read_ratings
    from tests.conftest import judgement

    path = tmp_path / "ratings-v2.csv"
    cells = [{**{k: v for k, v in judgement(f"t{i}").items() if k in V2_COLUMNS}, "schema_version": 2} for i in range(3)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=V2_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({**dict.fromkeys(V2_COLUMNS, ""), **c, "timestamp_utc": "2026-01-01T00:00:00.000Z"} for c in cells)
    before = path.read_bytes()
    table = read_ratings(path)
    assert len(table) == 3 and set(table["schema_version"]) == {2}
    assert all(set(table[c]) == {""} for c in ADDED_IN_V3)  # columns schema 2 did not have
    with pytest.raises(RatingsFileError, match="schema 2.*--ratings NEW.csv"):
        RatingsStore(path)
    assert path.read_bytes() == before
