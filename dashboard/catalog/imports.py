"""Catalog import: stream a CSV or JSON Lines file (or the Vionlabs Catalog API listing) into CatalogItem.

Used by `manage.py import_catalog`, the upload page in Django admin and `manage.py seed_demo`, so the three
behave the same. The file is read as a stream and written in batches, each in its own transaction: memory
stays flat however long the file is, and a bad row is reported (line number and reason) without stopping the
import or touching the good rows around it.

Two write paths with the same rules and the same report: on PostgreSQL each batch is COPYed and merged in
set-based SQL (import_copy.py), the file being parsed in a second thread a batch ahead; on SQLite the ORM
writes each batch (`_FileImporter._write`) and the file is read in line.

Rules (also in docs/catalog.md):
- Columns `inventory_id`, `title`, `kind` (blank means standalone), `parent_id`; every other column goes into
  `metadata`, which a re-import replaces as a whole. In CSV, one leading apostrophe before a formula-like cell
  (`'=…`, `'+…`, `'-…`, `'@…`) is dropped, as a spreadsheet does: the catalog export writes them (exports.py). `vionlabs_id` is never touched by a file import.
- A duplicate inventory id within one file: the first row wins; later ones are reported as bad rows.
- A title longer than the model allows is a bad row (the row is not imported): nothing is cut silently.
- A parent that appears later in the file is resolved at the end. A parent found neither in the file nor in
  the catalog is a bad row; the item itself is still imported and its parent left as it was.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import queue
import sqlite3
import tempfile
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from dashboard.vionlabs import CatalogEntry
from dashboard.vionlabs.errors import VionlabsError

from . import import_copy
from .exports import unescape_cell
from .models import CatalogItem, ItemKind
from .validators import validate_inventory_id

#: Rows per transaction through the ORM (SQLite).
BATCH_SIZE: Final = 1000
#: Rows per transaction on PostgreSQL, where a batch is one COPY and a few set-based statements (import_copy.py).
COPY_BATCH_SIZE: Final = 20_000
# Largest CSV field accepted (characters). Well above any real title or metadata value, and it bounds memory
# when an unclosed quote would otherwise swallow the rest of the file into one field.
MAX_FIELD_CHARS: Final = 4 * 1024 * 1024
# Largest JSON Lines line accepted (characters); a longer line is reported and skipped without being held.
MAX_LINE_CHARS: Final = 8 * 1024 * 1024
# Deepest nesting accepted in a JSON Lines row's metadata. Far beyond any real catalog; it keeps the checks,
# the JSON column and every page that shows the metadata clear of Python's recursion limit.
MAX_NESTING: Final = 64
# The first bytes are checked strictly: a file that is not UTF-8 there is refused as a whole.
_HEAD_BYTES: Final = 64 * 1024

FORMAT_CSV: Final = "csv"
FORMAT_JSONL: Final = "jsonl"
FORMATS: Final = (FORMAT_CSV, FORMAT_JSONL)
_JSONL_SUFFIXES: Final = {".jsonl", ".ndjson"}

_KNOWN_COLUMNS: Final = ("inventory_id", "title", "kind", "parent_id")
# CharFields: max_length is always set (the stubs type it int | None for every field).
_ID_MAX: Final = cast(int, CatalogItem._meta.get_field("inventory_id").max_length)
_TITLE_MAX: Final = cast(int, CatalogItem._meta.get_field("title").max_length)
_VIONLABS_ID_MAX: Final = cast(int, CatalogItem._meta.get_field("vionlabs_id").max_length)
_KINDS: Final = frozenset(ItemKind.values)

_CREATED, _UPDATED, _UNCHANGED = import_copy.CREATED, import_copy.UPDATED, import_copy.UNCHANGED


#: Told the number of rows done after each batch.
OnBatch = Callable[[int], None]


class ImportFileError(Exception):
    """The file as a whole cannot be imported (not UTF-8, no header, no inventory_id column, empty)."""


class ImportInterrupted(Exception):
    """The source failed part-way (Vionlabs unreachable); what was imported before is kept, in `report`."""

    def __init__(self, message: str, *, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str
    inventory_id: str = ""
    # "line" for a file; "item" (its position in the listing) for the Vionlabs Catalog API.
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    """Counts of one import, and the first `max_errors` bad rows (all of them are counted in `bad`)."""

    max_errors: int | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bad == 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.bad

    @property
    def errors_not_shown(self) -> int:
        return self.bad - len(self.errors)

    def add_error(self, error: RowError) -> None:
        self.bad += 1
        if self.max_errors is None or len(self.errors) < self.max_errors:
            self.errors.append(error)

    def summary(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, {self.bad} bad "
            f"({self.total} rows)"
        )


@dataclass(slots=True)
class _Row:
    line: int
    inventory_id: str
    title: str
    kind: str
    parent_id: str
    metadata: dict[str, Any]


# --- reading -----------------------------------------------------------------------------------------------


def detect_format(*, name: str | None = None, explicit: str | None = None) -> str | None:
    """The format asked for, else the one the file name says (.jsonl/.ndjson), else None (look at the data)."""
    if explicit:
        if explicit not in FORMATS:
            raise ImportFileError(f"Unknown format {explicit!r}: use one of {', '.join(FORMATS)}.")
        return explicit
    if name and name != "-":
        return FORMAT_JSONL if Path(name).suffix.lower() in _JSONL_SUFFIXES else FORMAT_CSV
    return None


class _PrefixedReader(io.RawIOBase):
    """The bytes already read to check the encoding, then the rest of the stream: stdin cannot seek back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _open_text(stream: BinaryIO) -> tuple[io.TextIOWrapper, str]:
    """A text stream over the binary one (and its first characters), after checking it starts as UTF-8.

    Invalid bytes further on are decoded as lone surrogates (surrogateescape) and the row holding them is
    reported as bad, instead of ending the import half-way with a traceback.
    """
    head = stream.read(_HEAD_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError(
            "The file is UTF-16 text: save it as UTF-8 (CSV UTF-8 in spreadsheet programs)."
        )
    is_complete = len(head) < _HEAD_BYTES
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=is_complete)
    except UnicodeDecodeError as exc:
        hint = (
            " (it looks like a spreadsheet: export it as CSV UTF-8)" if head.startswith(b"PK\x03\x04") else ""
        )
        raise ImportFileError(
            f"The file is not UTF-8 text{hint}: byte {exc.start + 1} cannot be decoded. Save it as UTF-8."
        ) from None
    if not text.strip():
        raise ImportFileError("The file is empty.")
    buffered = io.BufferedReader(_PrefixedReader(head, stream), buffer_size=_HEAD_BYTES)
    wrapper = io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return wrapper, text


def _text_problem(value: Any) -> str | None:
    """Why a value cannot be stored (invalid UTF-8, NUL or a non-finite number: PostgreSQL refuses them)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "is not valid UTF-8"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number (NaN and Infinity are not JSON)"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key) or _text_problem(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _text_problem(item)
            if problem:
                return problem
    return None


def _nesting(value: Any, *, limit: int) -> int:
    """How deeply lists and objects nest in `value` (iteratively), counting no further than limit + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if not isinstance(current, dict | list):
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = current.values() if isinstance(current, dict) else current
        stack.extend((child, depth) for child in children)
    return deepest


def _as_text(value: Any, name: str) -> str:
    """A JSON value that should be text: strings as they are, null as blank, integers as their digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{name} must be a string, not {type(value).__name__}")


def _make_row(line: int, values: dict[str, Any], metadata: dict[str, Any]) -> _Row | RowError:
    """Validate one row's values; the reasons are meant for the person who fixes the file."""
    try:
        inventory_id = _as_text(values.get("inventory_id"), "inventory_id")
        title = _as_text(values.get("title"), "title").strip()
        kind = _as_text(values.get("kind"), "kind").strip().lower() or ItemKind.STANDALONE
        parent_id = _as_text(values.get("parent_id"), "parent_id")
    except ValueError as exc:
        return RowError(line, str(exc))
    for name, value in (("inventory_id", inventory_id), ("title", title), ("parent_id", parent_id)):
        if problem := _text_problem(value):
            return RowError(line, f"{name} {problem}", inventory_id if name != "inventory_id" else "")
    if _nesting(metadata, limit=MAX_NESTING) > MAX_NESTING:
        return RowError(line, f"metadata is nested more than {MAX_NESTING} levels deep", inventory_id)
    if problem := _text_problem(metadata):
        return RowError(line, f"a metadata value {problem}", inventory_id)
    if not inventory_id:
        return RowError(line, "inventory_id is blank")
    if len(inventory_id) > _ID_MAX:
        return RowError(line, f"inventory_id is {len(inventory_id)} characters long; the limit is {_ID_MAX}")
    try:
        validate_inventory_id(inventory_id)
    except ValidationError as exc:
        return RowError(line, " ".join(exc.messages), inventory_id)
    if len(title) > _TITLE_MAX:
        return RowError(
            line,
            f"title is {len(title)} characters long; the limit is {_TITLE_MAX} (row not imported)",
            inventory_id,
        )
    if kind not in _KINDS:
        return RowError(
            line, f"unknown kind {kind!r} (expected one of {', '.join(ItemKind.values)})", inventory_id
        )
    if parent_id:
        if parent_id == inventory_id:
            return RowError(line, "the item names itself as its parent", inventory_id)
        if len(parent_id) > _ID_MAX:
            return RowError(line, f"parent_id is longer than {_ID_MAX} characters", inventory_id)
    return _Row(line, inventory_id, title, kind, parent_id, metadata)


class _CsvLines:
    """The physical lines of a CSV file for csv.reader, numbered, remembering those of the record being read.

    A record normally is one line; a quoted field may hold line breaks and span several. When a record turns
    out to be a stray quote swallowing the lines after it, `replay_after_first` hands those lines out again
    so each is read on its own: no row disappears into another one's field.
    """

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self._replay: deque[tuple[int, str]] = deque()
        self._read = 0
        self.record: list[tuple[int, str]] = []
        self._record_chars = 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        if self._replay:
            number, raw = self._replay.popleft()
        else:
            raw = self._text.readline()
            if not raw:
                raise StopIteration
            self._read += 1
            number = self._read
        self._record_chars += len(raw)
        if self.record and self._record_chars > MAX_FIELD_CHARS:
            # Bounded memory: a record this long is a stray quote, not a field (see MAX_FIELD_CHARS).
            self._replay.appendleft((number, raw))
            raise _RecordTooLong
        self.record.append((number, raw))
        return raw

    def start_record(self) -> None:
        self.record = []
        self._record_chars = 0

    @property
    def first_line(self) -> int:
        return self.record[0][0] if self.record else self._read + 1

    @property
    def last_line(self) -> int:
        return self.record[-1][0] if self.record else self._read

    def replay_after_first(self) -> None:
        self._replay.extendleft(reversed(self.record[1:]))
        self.record = self.record[:1]


class _RecordTooLong(Exception):
    """Raised through csv.reader when one record grows past MAX_FIELD_CHARS over several lines."""


def _unclosed_quote(lines: _CsvLines, why: str) -> RowError:
    return RowError(
        lines.first_line,
        f"a quote opened on this line is never closed properly ({why}): it would swallow lines "
        f"{lines.first_line}-{lines.last_line} into one field. This line is not imported; the lines after it "
        'are read on their own. Close or double the quote ("") and import again',
    )


def _csv_rows(text: io.TextIOWrapper) -> Iterator[_Row | RowError]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    lines = _CsvLines(text)
    # strict: a quoted field still open at the end of the file is an error, not the rest of the file.
    reader = csv.reader(lines, strict=True)
    header: list[str] = []
    while not header:
        lines.start_record()
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("The file is empty.") from None
        except (csv.Error, _RecordTooLong) as exc:
            raise ImportFileError(
                f"The header (line {lines.first_line}) cannot be read as CSV: {exc or 'a quote is never closed'}."
            ) from None
    names: list[str] = []
    for position, raw in enumerate(header, start=1):
        name = raw.strip()
        known = name.lower()
        names.append(known if known in _KNOWN_COLUMNS else name or f"column_{position}")
    if "inventory_id" not in names:
        found = ", ".join(repr(n) for n in names[:10])
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            hint = " The file must be comma-separated."
        raise ImportFileError(
            f"The header (line {lines.last_line}) has no inventory_id column; found {found}.{hint}"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ImportFileError(f"The header repeats column(s) {', '.join(duplicates)}.")

    while True:
        lines.start_record()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _RecordTooLong:
            yield _unclosed_quote(lines, f"the field grows past {MAX_FIELD_CHARS} characters")
            lines.replay_after_first()
            reader = csv.reader(lines, strict=True)
            continue
        except csv.Error as exc:
            if len(lines.record) > 1:
                yield _unclosed_quote(lines, str(exc))
                lines.replay_after_first()
                reader = csv.reader(lines, strict=True)
            else:
                yield RowError(lines.first_line, f"malformed CSV: {exc}")
            continue
        line = lines.first_line
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line
        if len(fields) != len(names):
            if len(lines.record) > 1:
                # A quoted field ran over line breaks and the row came out the wrong shape: a stray quote.
                yield _unclosed_quote(lines, f"{len(fields)} fields, but the header has {len(names)}")
                lines.replay_after_first()
                reader = csv.reader(lines, strict=True)
                continue
            yield RowError(line, f"{len(fields)} fields, but the header has {len(names)}")
            continue
        values: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        for name, raw in zip(names, fields, strict=True):
            # A leading apostrophe guards a formula-like cell in a spreadsheet (and in our own exports).
            value = unescape_cell(raw)
            if name in _KNOWN_COLUMNS:
                values[name] = value
            elif value != "":
                metadata[name] = value
        yield _make_row(line, values, metadata)


def _jsonl_rows(text: io.TextIOWrapper) -> Iterator[_Row | RowError]:
    line = 0
    while True:
        raw = text.readline(MAX_LINE_CHARS)
        if not raw:
            return
        line += 1
        if len(raw) >= MAX_LINE_CHARS and not raw.endswith(("\n", "\r")):
            while (rest := text.readline(MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                pass
            yield RowError(line, f"line is longer than {MAX_LINE_CHARS} characters")
            continue
        if not raw.strip():
            continue
        if problem := _text_problem(raw):
            yield RowError(line, f"line {problem}")
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            yield RowError(line, f"malformed JSON: {exc}")
            continue
        except RecursionError:
            yield RowError(line, f"JSON nested too deeply (more than {MAX_NESTING} levels are refused)")
            continue
        if not isinstance(obj, dict):
            yield RowError(line, f"expected a JSON object, found {type(obj).__name__}")
            continue
        values = {name: obj.pop(name, None) for name in _KNOWN_COLUMNS}
        if "inventory_id" not in values or values["inventory_id"] is None:
            yield RowError(line, "inventory_id is missing")
            continue
        yield _make_row(line, values, obj)


# --- remembering across batches -------------------------------------------------------------------------


class _Scratch:
    """What must be remembered over the whole file (ids seen, children whose parent is still unknown), kept
    in a temporary SQLite file rather than in memory, so a million-row file costs a few MB of RAM."""

    def __init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="import-catalog-", suffix=".sqlite3")  # noqa: SIM115
        self._db = sqlite3.connect(self._file.name, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -8000;
            CREATE TABLE seen (id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE pending (
                line INTEGER PRIMARY KEY, id TEXT NOT NULL, parent TEXT NOT NULL, outcome INTEGER NOT NULL
            );
            BEGIN;
            """
        )

    def first_line(self, inventory_id: str, line: int) -> int | None:
        """Remember the id; if it was seen before, the line where it was first seen."""
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (inventory_id, line))
        if cursor.rowcount:
            return None
        return self._db.execute("SELECT line FROM seen WHERE id = ?", (inventory_id,)).fetchone()[0]

    def add_pending(self, rows: Iterable[tuple[int, str, str, int]]) -> None:
        self._db.executemany("INSERT INTO pending VALUES (?, ?, ?, ?)", rows)

    def pending_chunks(self, size: int) -> Iterator[list[tuple[int, str, str, int]]]:
        last = 0
        while True:
            chunk = self._db.execute(
                "SELECT line, id, parent, outcome FROM pending WHERE line > ? ORDER BY line LIMIT ?",
                (last, size),
            ).fetchall()
            if not chunk:
                return
            yield chunk
            last = chunk[-1][0]

    def close(self) -> None:
        self._db.close()
        self._file.close()


# --- writing ----------------------------------------------------------------------------------------------


def _pks(inventory_ids: Iterable[str]) -> dict[str, int]:
    """Primary keys of the items among these inventory ids that exist."""
    wanted = list(inventory_ids)
    if not wanted:
        return {}
    return dict(CatalogItem.objects.filter(inventory_id__in=wanted).values_list("inventory_id", "pk"))


def _set_parents(assignments: dict[str, int]) -> None:
    """Point children (by inventory id) at their parents (by pk): one UPDATE per parent, not per child."""
    by_parent: dict[int, list[str]] = defaultdict(list)
    for child, parent_pk in assignments.items():
        by_parent[parent_pk].append(child)
    now = timezone.now()
    for parent_pk, children in by_parent.items():
        CatalogItem.objects.filter(inventory_id__in=children).update(parent_id=parent_pk, updated_at=now)


def default_batch_size() -> int:
    """Rows per transaction on the database in use: COPY batches on PostgreSQL, ORM batches elsewhere."""
    return COPY_BATCH_SIZE if connection.vendor == "postgresql" else BATCH_SIZE


def _encode_batch(rows: list[_Row]) -> bytes:
    return import_copy.encode_batch(
        (row.line, row.inventory_id, row.title, row.kind, row.parent_id, row.metadata) for row in rows
    )


class _BatchReader:
    """Reads, validates and de-duplicates the rows, and cuts them into batches for the writer.

    Yields _Batch: the bad rows met since the previous batch (in file order, to be reported before the batch
    is written, as if read in line), the batch, `encode`'s rendering of it (the COPY data on PostgreSQL), and
    whether the file is done.

    `threaded` (PostgreSQL): the reading runs in a thread of its own, a batch ahead, so the next batch is
    parsed while the database writes the current one: the two run on different cores (the database driver
    lets go of the GIL while it waits). At most two batches wait in memory. The thread touches no Django
    database connection; its ids-seen table is its own SQLite file. Through the ORM (SQLite) the writer is
    Python too, and a second thread would only contend for the GIL: there the rows are read in line.
    """

    def __init__(
        self,
        rows: Iterable[_Row | RowError],
        batch_size: int,
        encode: Callable[[list[_Row]], bytes] | None = None,
        *,
        threaded: bool = False,
    ) -> None:
        self._rows = rows
        self._batch_size = batch_size
        self._encode = encode
        self._queue: queue.Queue[_Batch | BaseException] = queue.Queue(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._produce, name="catalog-import-reader", daemon=True)
            self._thread.start()

    def __iter__(self) -> Iterator[_Batch]:
        if self._thread is None:
            seen = _Scratch()
            try:
                yield from self._batches(seen)
            finally:
                seen.close()
            return
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.last:
                return

    def close(self) -> None:
        """Stop the thread (after the last batch, or when the writer failed) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _put(self, item: _Batch | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _produce(self) -> None:
        seen = _Scratch()
        try:
            for batch in self._batches(seen):
                if not self._put(batch):
                    return
        except BaseException as exc:  # handed to the writer's thread, which raises it
            self._put(exc)
        finally:
            seen.close()

    def _batches(self, seen: _Scratch) -> Iterator[_Batch]:
        errors: list[RowError] = []
        batch: list[_Row] = []
        for row in self._rows:
            if isinstance(row, RowError):
                errors.append(row)
                continue
            first = seen.first_line(row.inventory_id, row.line)
            if first is not None:
                errors.append(
                    RowError(
                        row.line,
                        f"duplicate inventory id (first seen on line {first}; the first row wins)",
                        row.inventory_id,
                    )
                )
                continue
            batch.append(row)
            if len(batch) >= self._batch_size:
                yield self._batch(errors, batch, last=False)
                errors, batch = [], []
        yield self._batch(errors, batch, last=True)

    def _batch(self, errors: list[RowError], rows: list[_Row], *, last: bool) -> _Batch:
        data = self._encode(rows) if self._encode and rows else b""
        return _Batch(errors, rows, data, last)


@dataclass(slots=True)
class _Batch:
    errors: list[RowError]
    rows: list[_Row]
    data: bytes
    last: bool


class _FileImporter:
    def __init__(
        self, *, report: ImportReport, batch_size: int | None, on_batch: OnBatch | None = None
    ) -> None:
        self.report = report
        # PostgreSQL writes through COPY and set-based SQL (import_copy.py); other databases through the ORM.
        self.copy = connection.vendor == "postgresql"
        self.batch_size = batch_size or default_batch_size()
        self.on_batch = on_batch
        self.scratch = _Scratch()

    def run(self, rows: Iterable[_Row | RowError]) -> None:
        reader = _BatchReader(rows, self.batch_size, _encode_batch if self.copy else None, threaded=self.copy)
        try:
            for batch in reader:
                for error in batch.errors:
                    self.report.add_error(error)
                if batch.rows:
                    self._flush(batch)
                if not batch.last and self.on_batch:
                    self.on_batch(self.report.total)
            self._resolve_pending()
            if self.on_batch:
                self.on_batch(self.report.total)
            # Missing parents are only known at the end: list every bad row in file order.
            self.report.errors.sort(key=lambda error: error.line)
        finally:
            reader.close()
            self.scratch.close()

    def _flush(self, batch: _Batch) -> None:
        try:
            outcomes, pending = self._write_copy(batch.data) if self.copy else self._write(batch.rows)
        except (DataError, IntegrityError):
            # The database refused something validation let through: write the rows one by one so only the
            # refused row is lost. (Other database errors, a lost connection say, end the import: batches
            # committed before are kept and a re-run continues.)
            for row in batch.rows:
                try:
                    self._flush_one(row)
                except (DataError, IntegrityError) as exc:
                    self.report.add_error(
                        RowError(row.line, f"the database refused the row: {exc}", row.inventory_id)
                    )
            return
        self._count(outcomes)
        self.scratch.add_pending(pending)

    def _flush_one(self, row: _Row) -> None:
        outcomes, pending = self._write([row])
        self._count(outcomes)
        self.scratch.add_pending(pending)

    def _count(self, outcomes: Mapping[int, int]) -> None:
        self.report.created += outcomes.get(_CREATED, 0)
        self.report.updated += outcomes.get(_UPDATED, 0)
        self.report.unchanged += outcomes.get(_UNCHANGED, 0)

    @staticmethod
    def _write_copy(data: bytes) -> tuple[dict[int, int], list[tuple[int, str, str, int]]]:
        """The PostgreSQL path: the same outcomes and waiting children as `_write`, through COPY."""
        with transaction.atomic(), connection.wrap_database_errors:
            return import_copy.write_batch(data, timezone.now())

    def _write(self, batch: list[_Row]) -> tuple[dict[int, int], list[tuple[int, str, str, int]]]:
        """Upsert one batch in one transaction; returns each row's outcome and the rows whose parent is
        still unknown (later in the file, or missing).

        Rows are written in rounds, parents before children: a series, then its seasons (whose parent now
        has a pk), then their episodes. A few bulk statements per batch, not one UPDATE per parent.
        """
        ids = [row.inventory_id for row in batch]
        with transaction.atomic():
            existing: dict[str, tuple[str, str, Any, int | None]] = {
                inventory_id: (title, kind, metadata, parent)
                for inventory_id, title, kind, metadata, parent in CatalogItem.objects.filter(
                    inventory_id__in=ids
                ).values_list("inventory_id", "title", "kind", "metadata", "parent_id")
            }
            known = _pks({row.parent_id for row in batch if row.parent_id})
            outcomes: dict[int, int] = {}
            remaining = list(enumerate(batch))
            while remaining:
                ready = [(i, row) for i, row in remaining if not row.parent_id or row.parent_id in known]
                if not ready:
                    break
                remaining = [(i, row) for i, row in remaining if row.parent_id and row.parent_id not in known]
                self._upsert(ready, existing, known, outcomes)
                known.update(_pks({row.parent_id for _, row in remaining} - known.keys()))
            # Parents neither in the catalog nor earlier in this batch: the item keeps its parent for now,
            # and the second pass at the end of the file tries again.
            self._upsert(remaining, existing, None, outcomes)
            pending = [(row.line, row.inventory_id, row.parent_id, outcomes[i]) for i, row in remaining]
        counted: dict[int, int] = defaultdict(int)
        for outcome in outcomes.values():
            counted[outcome] += 1
        return counted, pending

    @staticmethod
    def _upsert(
        rows: list[tuple[int, _Row]],
        existing: dict[str, tuple[str, str, Any, int | None]],
        parents: dict[str, int] | None,
        outcomes: dict[int, int],
    ) -> None:
        """Write the rows that differ from the database; `parents` None keeps each item's current parent."""
        to_write: list[CatalogItem] = []
        for index, row in rows:
            current = existing.get(row.inventory_id)
            if parents is None:
                parent = current[3] if current else None
            else:
                parent = parents[row.parent_id] if row.parent_id else None
            if current is None:
                outcomes[index] = _CREATED
            elif current != (row.title, row.kind, row.metadata, parent):
                outcomes[index] = _UPDATED
            else:
                outcomes[index] = _UNCHANGED
                continue
            to_write.append(
                CatalogItem(
                    inventory_id=row.inventory_id,
                    title=row.title,
                    kind=row.kind,
                    metadata=row.metadata,
                    parent_id=parent,
                )
            )
        if to_write:
            CatalogItem.objects.bulk_create(
                to_write,
                update_conflicts=True,
                unique_fields=["inventory_id"],
                update_fields=["title", "kind", "metadata", "parent", "updated_at"],
            )

    def _resolve_pending(self) -> None:
        """The second pass: parents that appeared later in the file exist now; the rest are missing."""
        if self.copy:
            self._resolve_pending_copy()
            return
        for chunk in self.scratch.pending_chunks(self.batch_size):
            with transaction.atomic():
                parents = dict(
                    CatalogItem.objects.filter(
                        inventory_id__in={parent for _, _, parent, _ in chunk}
                    ).values_list("inventory_id", "pk")
                )
                current = dict(
                    CatalogItem.objects.filter(
                        inventory_id__in=[child for _, child, _, _ in chunk]
                    ).values_list("inventory_id", "parent_id")
                )
                assignments: dict[str, int] = {}
                for line, child, parent, outcome in chunk:
                    parent_pk = parents.get(parent)
                    if parent_pk is None:
                        self._orphan(line, child, parent, outcome)
                    elif current.get(child) != parent_pk:
                        assignments[child] = parent_pk
                        if outcome == _UNCHANGED:
                            self.report.unchanged -= 1
                            self.report.updated += 1
                _set_parents(assignments)

    def _resolve_pending_copy(self) -> None:
        for chunk in self.scratch.pending_chunks(self.batch_size):
            with transaction.atomic(), connection.wrap_database_errors:
                moved, orphans = import_copy.resolve_parents(chunk, timezone.now())
            for _, outcome in moved:
                if outcome == _UNCHANGED:
                    self.report.unchanged -= 1
                    self.report.updated += 1
            for line, child, parent, outcome in orphans:
                self._orphan(line, child, parent, outcome)

    def _orphan(self, line: int, child: str, parent: str, outcome: int) -> None:
        """Report a row whose parent was found nowhere (the row itself was written)."""
        self.report.add_error(
            RowError(
                line,
                f"parent {parent!r} is neither in the file nor in the catalog "
                "(the item was imported; its parent was left as it was)",
                child,
            )
        )
        self._uncount(outcome)

    def _uncount(self, outcome: int) -> None:
        # Each row is counted once: a row reported as bad leaves the count it was first given.
        if outcome == _CREATED:
            self.report.created -= 1
        elif outcome == _UPDATED:
            self.report.updated -= 1
        else:
            self.report.unchanged -= 1


def import_catalog_file(
    stream: BinaryIO,
    *,
    fmt: str | None = None,
    name: str | None = None,
    batch_size: int | None = None,
    max_errors: int | None = None,
    on_batch: OnBatch | None = None,
) -> ImportReport:
    """Import a CSV or JSON Lines catalog from a binary stream; raises ImportFileError for a malformed file.
    `on_batch` is told the rows done so far after each batch (a command's progress line). `batch_size` is the
    rows per transaction (default: `default_batch_size()`).

    `fmt` ("csv"/"jsonl") wins; otherwise the name's extension decides, and a nameless stream (stdin) is
    JSON Lines when its first character is `{`.
    """
    fmt = detect_format(name=name, explicit=fmt)
    text, head = _open_text(stream)
    if fmt is None:
        fmt = FORMAT_JSONL if head.lstrip().startswith("{") else FORMAT_CSV
    report = ImportReport(max_errors=max_errors)
    rows = _jsonl_rows(text) if fmt == FORMAT_JSONL else _csv_rows(text)
    _FileImporter(report=report, batch_size=batch_size, on_batch=on_batch).run(rows)
    return report


def import_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    batch_size: int | None = None,
    max_errors: int | None = None,
    on_batch: OnBatch | None = None,
) -> ImportReport:
    """Import rows given as mappings (as JSON Lines objects: known keys, the rest metadata), numbered from 1.

    The same validation, batching and parent resolution as a file; for code that builds a catalog itself
    (seed_demo).
    """
    report = ImportReport(max_errors=max_errors)

    def validated() -> Iterator[_Row | RowError]:
        for line, row in enumerate(rows, start=1):
            metadata = {key: value for key, value in row.items() if key not in _KNOWN_COLUMNS}
            yield _make_row(line, {name: row.get(name) for name in _KNOWN_COLUMNS}, metadata)

    _FileImporter(report=report, batch_size=batch_size, on_batch=on_batch).run(validated())
    return report


# --- the Vionlabs Catalog API -------------------------------------------------------------------------------


def _entry_problem(entry: CatalogEntry) -> str | None:
    if not isinstance(entry.id, str) or not entry.id:
        return "id is blank"
    if len(entry.id) > _ID_MAX:
        return f"id is longer than {_ID_MAX} characters"
    try:
        validate_inventory_id(entry.id)
    except ValidationError as exc:
        return " ".join(exc.messages)
    if problem := _text_problem(entry.id):
        return f"id {problem}"
    if entry.type not in _KINDS:
        return f"unknown type {entry.type!r}"
    if entry.vionlabs_id is not None and (
        len(entry.vionlabs_id) > _VIONLABS_ID_MAX or _text_problem(entry.vionlabs_id)
    ):
        return "vionlabs_id is too long or not text"
    return None


def _write_vionlabs_batch(batch: dict[str, CatalogEntry], report: ImportReport) -> None:
    """Upsert kind and vionlabs_id (titles, metadata and parents stay as the files made them)."""
    with transaction.atomic():
        existing = {
            inventory_id: (kind, vionlabs_id)
            for inventory_id, kind, vionlabs_id in CatalogItem.objects.filter(
                inventory_id__in=list(batch)
            ).values_list("inventory_id", "kind", "vionlabs_id")
        }
        to_write: list[CatalogItem] = []
        created = updated = unchanged = 0
        for inventory_id, entry in batch.items():
            wanted = (entry.type, entry.vionlabs_id or "")
            current = existing.get(inventory_id)
            if current == wanted:
                unchanged += 1
                continue
            if current is None:
                created += 1
            else:
                updated += 1
            to_write.append(CatalogItem(inventory_id=inventory_id, kind=wanted[0], vionlabs_id=wanted[1]))
        if to_write:
            CatalogItem.objects.bulk_create(
                to_write,
                update_conflicts=True,
                unique_fields=["inventory_id"],
                update_fields=["kind", "vionlabs_id", "updated_at"],
            )
    report.created += created
    report.updated += updated
    report.unchanged += unchanged


def import_from_vionlabs(
    entries: Iterable[CatalogEntry],
    *,
    batch_size: int = BATCH_SIZE,
    max_errors: int | None = None,
    on_batch: OnBatch | None = None,
) -> ImportReport:
    """Upsert the items of a Vionlabs catalog listing (id → inventory_id, type → kind, vionlabs_id).

    The listing is read page by page between batches, never inside a transaction. When it fails part-way
    (a VionlabsError), the batches written so far are kept and ImportInterrupted carries their report.
    """
    report = ImportReport(max_errors=max_errors)
    iterator = iter(entries)
    batch: dict[str, CatalogEntry] = {}
    position = 0
    while True:
        try:
            entry = next(iterator)
        except StopIteration:
            break
        except VionlabsError as exc:
            if batch:
                _write_vionlabs_batch(batch, report)
            raise ImportInterrupted(
                f"The Vionlabs catalog listing failed after {position} items: {exc}", report=report
            ) from exc
        position += 1
        if problem := _entry_problem(entry):
            report.add_error(
                RowError(position, problem, entry.id if isinstance(entry.id, str) else "", unit="item")
            )
            continue
        if entry.id in batch:
            # A listing that shifts while being paged can repeat an item: the upsert makes it harmless.
            report.unchanged += 1
        batch[entry.id] = entry
        if len(batch) >= batch_size:
            _write_vionlabs_batch(batch, report)
            batch = {}
            if on_batch:
                on_batch(report.total)
    if batch:
        _write_vionlabs_batch(batch, report)
    if on_batch:
        on_batch(report.total)
    return report
