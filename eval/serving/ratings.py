"""Append-only ratings log: one CSV row per listener judgement, safe under concurrent writers.

The file is the raw record of a listening test, so it is guarded more than it is convenient:

* rows are only ever appended (earlier bytes are never rewritten); each row is one physical line,
  written with a single ``write`` on an ``O_APPEND`` descriptor, then flushed and fsync'ed;
* every append holds an exclusive ``fcntl.flock`` on the file itself, so browser sessions in one
  process (threads) and several app processes on one file serialise their writes;
* a torn last line (a crash mid-write leaves bytes without the final newline) is detected under
  the lock, its bytes are moved to a side file ``<name>.torn-<UTC time>`` and the log says so;
* a file whose header is not this schema's, or with a malformed row, raises
  :class:`RatingsFileError` at start-up and is left untouched;
* free-text cells starting with ``= + - @``, tab or CR get a leading ``'`` so that spreadsheets
  show them as text rather than evaluating a formula; CR/LF inside a value become spaces, which
  keeps "one row = one line" true and makes torn-write detection exact.
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .ratings_schema import (
    COLUMNS,
    FORMULA_PREFIXES,
    MODES,
    PREFERENCES,
    SCHEMA_VERSION,
    SCORE_LABELS,
    TRIAL_KINDS,
    V1_COLUMNS,
    V2_COLUMNS,
)

log = logging.getLogger(__name__)

# Columns the store fills itself; callers may not set them.
AUTO_COLUMNS = ("schema_version", "timestamp_utc")
# Validated integer columns (never spreadsheet-escaped: they cannot start with a formula char).
INT_COLUMNS = ("a_flow_steps", "a_seed", "b_flow_steps", "b_seed", "score_a", "score_b", "a_plays", "b_plays")
SIDES = ("A", "B")
MAX_FIELD_CHARS = 4_000  # a longer cell is a bug or an attack; the app caps text far below this
HEADER_LINE = ",".join(COLUMNS) + "\n"
HEADER_BYTES = HEADER_LINE.encode("ascii")
# Headers of earlier schema versions: such a file is kept as it is and never appended to.
OLDER_HEADERS: dict[int, bytes] = {
    version: (",".join(columns) + "\n").encode("ascii") for version, columns in ((1, V1_COLUMNS), (2, V2_COLUMNS))
}
RELEASE_NAMES = {1: "the first release", 2: "the release before per-clip play counts"}


class RatingsFileError(RuntimeError):
    """The ratings file exists but is not a readable ratings log of this schema."""


class DuplicateRatingError(ValueError):
    """A rating for this trial id is already in the log."""


def utc_timestamp() -> str:
    """Now in UTC as ISO 8601 with milliseconds and 'Z', e.g. ``2026-11-26T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spreadsheet_safe(value: str) -> str:
    """``value`` on one line, with a leading ``'`` when a spreadsheet would read it as a formula."""
    flat = value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "'" + flat if flat.startswith(FORMULA_PREFIXES) else flat


def _format_int(column: str, value: object, low: int, high: int) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{column} must be an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{column} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{column} must be between {low} and {high}, got {number}")
    return str(number)


def format_row(row: Mapping[str, object]) -> list[str]:
    """Validate a judgement and return its CSV cells in :data:`COLUMNS` order (without the auto columns).

    Raises ValueError naming the offending column for unknown/missing columns or bad values.
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown rating column(s): {', '.join(unknown)}")
    auto = sorted(set(row) & set(AUTO_COLUMNS))
    if auto:
        raise ValueError(f"column(s) {', '.join(auto)} are filled by the store")
    missing = [c for c in COLUMNS if c not in AUTO_COLUMNS and c not in row]
    if missing:
        raise ValueError(f"missing rating column(s): {', '.join(missing)}")
    cells: dict[str, str] = {}
    for column in INT_COLUMNS:
        low, high = (min(SCORE_LABELS), max(SCORE_LABELS)) if column.startswith("score") else (0, 2**63 - 1)
        cells[column] = _format_int(column, row[column], low, high)
    choices = {"mode": MODES, "preference": PREFERENCES, "shown_first": SIDES, "trial_kind": TRIAL_KINDS}
    for column, allowed in choices.items():
        if row[column] not in allowed:
            raise ValueError(f"{column} must be one of {list(allowed)}, got {row[column]!r}")
        cells[column] = str(row[column])
    for column in COLUMNS:
        if column in cells or column in AUTO_COLUMNS:
            continue
        value = "" if row[column] is None else str(row[column])
        if len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"{column} is longer than {MAX_FIELD_CHARS} characters")
        cells[column] = spreadsheet_safe(value)
    for column in ("listener_id", "trial_id"):
        if not cells[column].strip():
            raise ValueError(f"{column} must not be empty")
    return [cells.get(c, "") for c in COLUMNS]


def _csv_line(cells: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue().encode("utf-8")


class RatingsStore:
    """The ratings CSV at ``path``; created with a header when absent or empty.

    Raises :class:`RatingsFileError` when the file exists with a different header or a malformed
    row (the file is then left exactly as it was).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()  # one writer per process at a time; flock does the rest
        self._offset = 0  # bytes of the file already parsed into _rows / _trial_ids
        self._rows: list[dict[str, str]] = []
        self._trial_ids: set[str] = set()
        self.quarantined: list[Path] = []  # side files of torn lines found by this store
        self._lines_parsed = 0  # physical lines parsed, for error messages
        with self._locked(fcntl.LOCK_EX) as fd:
            self._sync(fd)

    # -- public API ---------------------------------------------------------------------------

    def append(self, row: Mapping[str, object]) -> dict[str, str]:
        """Append one judgement; returns the row as written (strings, with timestamp and version).

        Raises ValueError for a bad row and :class:`DuplicateRatingError` when the trial id is
        already in the file (checked under the lock, so two processes cannot both write it).
        """
        cells = format_row(row)
        cells[COLUMNS.index("schema_version")] = str(SCHEMA_VERSION)
        trial_id = cells[COLUMNS.index("trial_id")]
        with self._thread_lock, self._locked(fcntl.LOCK_EX) as fd:
            self._sync(fd)
            if trial_id in self._trial_ids:
                raise DuplicateRatingError(f"trial {trial_id!r} has already been rated")
            cells[COLUMNS.index("timestamp_utc")] = utc_timestamp()
            line = _csv_line(cells)
            self._write_all(fd, line)
            os.fsync(fd)
            self._offset += len(line)
            self._lines_parsed += 1
            written = dict(zip(COLUMNS, cells))
            self._rows.append(written)
            self._trial_ids.add(trial_id)
        return written

    def rows(self) -> list[dict[str, str]]:
        """Every row of the file, including rows other processes appended (strings, as stored)."""
        with self._thread_lock, self._locked(fcntl.LOCK_EX) as fd:
            self._sync(fd)
            return [dict(r) for r in self._rows]

    def rated_trial_ids(self, listener_id: str | None = None) -> set[str]:
        """Trial ids already rated (by ``listener_id`` when given; the id as stored, escaped)."""
        rows = self.rows()
        if listener_id is not None:
            stored = spreadsheet_safe(listener_id)
            rows = [r for r in rows if r["listener_id"] == stored]
        return {r["trial_id"] for r in rows}

    # -- internals ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, mode: int) -> Iterator[int]:
        # A fresh descriptor per call: flock locks belong to the open file description, so two
        # descriptors in one process exclude each other just like two processes do.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _sync(self, fd: int) -> None:
        """Under the lock: check the header, quarantine a torn tail, parse rows appended since last time."""
        size = os.fstat(fd).st_size
        if size < self._offset:
            raise RatingsFileError(f"{self.path} shrank from {self._offset} to {size} bytes while in use")
        new = os.pread(fd, size - self._offset, self._offset)
        if self._offset == 0:
            new = self._check_header(fd, new)
            self._lines_parsed = 1
            self._offset = len(HEADER_BYTES)
            new = new[len(HEADER_BYTES) :]
        cut = new.rfind(b"\n") + 1
        if cut < len(new):
            self._quarantine(fd, self._offset + cut, new[cut:])
            new = new[:cut]
        parsed = self._parse(new)
        self._rows.extend(parsed)
        self._trial_ids.update(r["trial_id"] for r in parsed)
        self._offset += len(new)

    def _check_header(self, fd: int, content: bytes) -> bytes:
        """The file content, after writing the header into an empty file; raises for a foreign file."""
        if content.startswith(HEADER_BYTES):
            return content
        if HEADER_BYTES.startswith(content):
            # Empty, or a header torn by a crash right after creation: nothing else can be lost.
            if content:
                self._quarantine(fd, 0, content)
            self._write_all(fd, HEADER_BYTES)
            os.fsync(fd)
            return HEADER_BYTES
        for version, header in OLDER_HEADERS.items():
            if content.startswith(header):
                raise RatingsFileError(
                    f"{self.path} was written by {RELEASE_NAMES[version]} (ratings schema {version}). It is kept "
                    "as it is and `python -m eval.statistics.report` still reads it; start this test's new ratings in "
                    "another file with --ratings NEW.csv."
                )
        first = content.split(b"\n", 1)[0][:200].decode("utf-8", "replace")
        raise RatingsFileError(
            f"{self.path} is not a ratings log of schema version {SCHEMA_VERSION}: its first line is "
            f"{first!r}, expected the header {HEADER_LINE.strip()!r}. The file was left untouched; "
            "pass another --ratings path or move it away."
        )

    def _parse(self, body: bytes) -> list[dict[str, str]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RatingsFileError(f"{self.path} is not UTF-8 text ({err}); left untouched") from None
        rows = []
        for cells in csv.reader(io.StringIO(text)):
            self._lines_parsed += 1
            where = f"line {self._lines_parsed}"
            if len(cells) != len(COLUMNS):
                raise RatingsFileError(
                    f"{self.path}: malformed {where}: {len(cells)} fields, expected {len(COLUMNS)}; left untouched"
                )
            if cells[0] != str(SCHEMA_VERSION):
                raise RatingsFileError(
                    f"{self.path}: {where} has schema version {cells[0]!r}; left untouched"
                )
            rows.append(dict(zip(COLUMNS, cells)))
        return rows

    def _quarantine(self, fd: int, start: int, tail: bytes) -> None:
        """Move the torn bytes after ``start`` into a side file and cut them from the log."""
        stamp = utc_timestamp().replace(":", "").replace(".", "")
        side = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        with open(side, "wb") as f:
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
        # NOTE: only bytes after the last complete line are cut; earlier rows are never rewritten.
        os.ftruncate(fd, start)
        os.fsync(fd)
        self.quarantined.append(side)
        log.warning(
            "ratings log %s ended with a torn line of %d bytes (a crash mid-write?); kept it in %s and cut it",
            self.path,
            len(tail),
            side,
        )
