"""The local study database: what the app knows about the files it has seen (Qt-free).

One SQLite file (``studies.sqlite`` in the user's data folder, WAL journal) holds:

- ``files``: each file by path, with its size and modification time (the quick key), its
  content hash and the header summary the worklist shows (no pixel data, no other tags);
- ``scores``: every score, percentile, flag (with the threshold it was made at) and heatmap
  summary per (content hash, model id);
- ``reading``: the reading state of each image (unread / read / reviewed), by whom and when;
- ``marks``: the reader's marks (agree / disagree with the flag, confirmed normal, confirmed
  abnormal, a comment), append-only, the latest one per image being the current one;
- ``drift``: the drift check (:mod:`engine.drift`) of each scored worklist: the detector, the
  calibration, how many folders and scores, the test's p-value, whether drift was found, the
  estimated specificity and the full report (numbers and words; no path);
- ``audit``: who opened, read, marked or exported what, with which model. Audit rows name
  images by content hash and folders by file count only: never a path (folder names often
  carry a patient's name) nor any header value.

Content identity. Reopening a folder must not read its files again, and a file changed in
place must be scored again. So a file is first matched by its quick key (path, size,
``st_mtime_ns``): an editor, a copy over it or a re-export changes one of them, and a
matching key costs one ``stat``. Only files whose key is new are read, in full, for a BLAKE2b
(128-bit) hash of their bytes: a sound identity (a partial hash of head and tail would call two
DICOMs that differ only in pixel data the same), and cheap because these are exactly the files
the app is about to score, so the engine reads them next from the page cache. Scores, reading
state and marks hang on the content, so a renamed or copied image keeps them.

Durability: every batch of writes is one transaction; WAL with ``synchronous=NORMAL`` keeps
every committed transaction through an application crash (kill -9); only an operating-system
crash or power loss may lose the last ones (never corrupt the file). Two app windows (two
processes) share the file through SQLite's locking, with a busy timeout.

Versions: the schema version is ``PRAGMA user_version``; an older file is migrated step by step
(:data:`MIGRATIONS`) in one transaction; a newer one is refused with
:class:`StudyDatabaseError` before anything is written to it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.acquisition import as_descriptor
from cxrscreen.engine.io.meta_json import meta_to_json
from cxrscreen.engine.io import RadiographMeta

logger = logging.getLogger(__name__)

ReadState = Literal["unread", "read", "reviewed"]
Mark = Literal["agree", "disagree", "normal", "abnormal"]
READ_STATES: tuple[str, ...] = get_args(ReadState)
MARKS: tuple[str, ...] = get_args(Mark)
DB_FILE = "studies.sqlite"
BUSY_TIMEOUT_S = 10.0
HASH_CHUNK = 1 << 20
_IN_CHUNK = 500  # parameters per IN (...) query (SQLite's default limit is 32,766)
# the header fields the worklist and case panel show before a file is decoded
SUMMARY_FIELDS: tuple[str, ...] = (
    "format", "rows", "columns", "bits_stored", "photometric", "samples_per_pixel", "modality", "view_position",
    "body_part", "patient_id", "patient_name", "study_uid", "series_uid", "accession_number", "study_date",
    "number_of_frames")

# Each step takes the schema from version i - 1 to i. Never edit a released step: add one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: files, scores, reading state, audit
        """CREATE TABLE files (
               path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
               content TEXT NOT NULL, header TEXT, error TEXT, seen_at REAL NOT NULL)""",
        "CREATE INDEX files_content ON files(content)",
        """CREATE TABLE scores (
               content TEXT NOT NULL, model_id TEXT NOT NULL, score REAL, percentile REAL,
               flagged INTEGER, threshold REAL, heatmap TEXT, error TEXT, scored_at REAL NOT NULL,
               PRIMARY KEY (content, model_id)) WITHOUT ROWID""",
        """CREATE TABLE reading (
               content TEXT PRIMARY KEY,
               state TEXT NOT NULL CHECK (state IN ('unread', 'read', 'reviewed')),
               reader TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE audit (
               id INTEGER PRIMARY KEY, at REAL NOT NULL, reader TEXT NOT NULL, action TEXT NOT NULL,
               model_id TEXT, content TEXT, detail TEXT NOT NULL DEFAULT '')""",
    ),
    (  # 2: reader marks
        """CREATE TABLE marks (
               id INTEGER PRIMARY KEY, content TEXT NOT NULL,
               mark TEXT CHECK (mark IS NULL OR mark IN ('agree', 'disagree', 'normal', 'abnormal')),
               comment TEXT NOT NULL DEFAULT '', reader TEXT NOT NULL, at REAL NOT NULL)""",
        "CREATE INDEX marks_content ON marks(content, id)",
    ),
    (  # 3: drift checks of scored worklists (engine.drift)
        """CREATE TABLE drift (
               id INTEGER PRIMARY KEY, at REAL NOT NULL, reader TEXT NOT NULL, model_id TEXT NOT NULL,
               calibration TEXT NOT NULL, folders INTEGER NOT NULL, n INTEGER NOT NULL, p_value REAL NOT NULL,
               drift INTEGER NOT NULL, specificity_promised REAL NOT NULL, specificity_estimated REAL,
               report TEXT NOT NULL)""",
    ),
    (  # 4: each score's image descriptor for the acquisition check (engine.acquisition), JSON
        "ALTER TABLE scores ADD COLUMN acquisition TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_SUMMARY_SET = frozenset(SUMMARY_FIELDS)


class StudyDatabaseError(ValueError):
    """The study database cannot be used (a newer version wrote it, or it is not a database).

    Attributes:
        path: the database file.
        version: its schema version when known (else None).
    """

    def __init__(self, path: Path, message: str, version: int | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.version = version


@dataclass(frozen=True)
class StoredScore:
    """One detector's result for one image, as stored.

    Attributes:
        model_id: the detector.
        score: the image score (None when scoring failed).
        percentile: percent of the detector's calibration normals scoring lower.
        flagged: whether it was flagged at ``threshold`` when stored (None: unknown).
        threshold: the flag threshold at that time.
        heatmap: a summary of the heatmap (e.g. its peak level), None until a heatmap was made.
        error: why scoring failed, else None.
        acquisition: the image's descriptor for the acquisition check (:mod:`engine.acquisition`),
            None when it was scored without one (or stored before schema 4).
    """

    model_id: str
    score: float | None
    percentile: float | None
    flagged: bool | None = None
    threshold: float | None = None
    heatmap: dict[str, float] | None = None
    error: str | None = None
    acquisition: tuple[float, ...] | None = None


@dataclass(frozen=True)
class KnownFile:
    """What the database knows about a file whose quick key still matches.

    Attributes:
        path: the file.
        content: its content hash.
        meta: the header summary (None when the file could not be read).
        error: why the file cannot be read, else None.
        scores: results by model id.
        state: the reading state.
        mark: the reader's current mark (None: none).
        comment: the reader's current comment.
    """

    path: Path
    content: str
    meta: RadiographMeta | None
    error: str | None
    scores: dict[str, StoredScore]
    state: ReadState = "unread"
    mark: Mark | None = None
    comment: str = ""


@dataclass(frozen=True)
class ScoreRow:
    """A score to store, for the file at ``path``."""

    path: Path
    model_id: str
    score: float | None
    percentile: float | None
    flagged: bool | None = None
    threshold: float | None = None
    error: str | None = None
    acquisition: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DriftRecord:
    """A drift check of a scored worklist, as stored (no path: folders are counted only).

    Attributes:
        at: when (seconds since the epoch).
        reader: who had the worklist open.
        model_id: the detector.
        calibration: the calibration's label (:attr:`engine.detector.NormalCalibration.label`).
        folders: how many folders the worklist held.
        report: :meth:`engine.drift.DriftReport.to_dict` (p-value, flag, estimate, message...).
    """

    at: float
    reader: str
    model_id: str
    calibration: str
    folders: int
    report: dict[str, Any]


@dataclass(frozen=True)
class ReaderCase:
    """A case the reader marked: for exports and training sets."""

    path: Path
    content: str
    mark: Mark
    reader: str
    at: float


def default_path() -> Path:
    """The user's study database file."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cxrscreen")) / DB_FILE


def content_hash(path: Path) -> str:
    """BLAKE2b-128 of a file's bytes, as hex (the file's content identity)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def header_summary(meta: RadiographMeta) -> dict[str, Any]:
    """The header fields stored for display (:data:`SUMMARY_FIELDS`)."""
    full = meta_to_json(meta)
    return {k: full[k] for k in SUMMARY_FIELDS if full.get(k) is not None}


def _summary_meta(path: Path, header: str) -> RadiographMeta | None:
    """The stored header summary as a :class:`RadiographMeta`, or None when it is not one.

    Faster than :func:`engine.io.meta_json.meta_from_json` (10,000 files are listed at once on
    reopening): the summary holds only strings and integers, checked here.
    """
    try:
        fields = json.loads(header)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not set(fields) <= _SUMMARY_SET:
        return None
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in fields.values()):
        return None
    try:
        return RadiographMeta(path=path, **fields)
    except TypeError:  # a required field missing
        return None


class StudyDatabase:
    """A connection to the study database (use it from one thread).

    Args:
        path: the database file (created with its folder when missing).
        timeout_s: how long a write waits for another process's transaction.

    Raises:
        StudyDatabaseError: the file is from a newer version of the app, or not a database.
    """

    def __init__(self, path: Path, timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StudyDatabaseError(self.path, f"cannot be opened ({exc})") from exc
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:  # checked before anything is written
                raise StudyDatabaseError(
                    self.path, f"was written by a newer cxrscreen (schema version {version}; this version "
                    f"reads up to {SCHEMA_VERSION}). It was left unchanged: update the app, or move "
                    "the file away to start a new database.", version)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StudyDatabaseError(self.path, f"is not a usable study database ({exc}); it was left "
                                     "unchanged: move it away to start a new one") from exc
        except StudyDatabaseError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ schema
    @property
    def version(self) -> int:
        """The schema version of the file."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        if self.version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")  # another window may migrate at the same time
        try:
            current = self.version
            if current > SCHEMA_VERSION:
                raise StudyDatabaseError(self.path, f"was migrated to a newer schema ({current}) meanwhile", current)
            for step in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {step + 1}")
                logger.info("study database %s migrated to schema %d", self.path, step + 1)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        """Start a write transaction (waits up to the busy timeout for another process)."""
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def execute(self, sql: str) -> None:
        """Run a statement without parameters (savepoints)."""
        self._db.execute(sql)

    # ------------------------------------------------------------------ reads
    def known(self, stats: Iterable[tuple[Path, int, int]]) -> dict[Path, KnownFile]:
        """The files whose quick key (path, size, mtime_ns) matches the database."""
        keys = {str(path): (path, size, mtime) for path, size, mtime in stats}
        rows: dict[Path, tuple[str, str | None, str | None]] = {}
        sql = "SELECT path, size, mtime_ns, content, header, error FROM files WHERE path IN ({})"
        for name, size, mtime, content, header, error in self._chunks(sql, list(keys)):
            path, size_now, mtime_now = keys[name]
            if (size, mtime) == (size_now, mtime_now):  # the quick key still matches
                rows[path] = (content, header, error)
        contents = sorted({c for c, _, _ in rows.values()})
        scores = self._scores(contents)
        states = self._states(contents)
        marks = self._marks(contents)
        out: dict[Path, KnownFile] = {}
        for path, (content, header, error) in rows.items():
            meta = None
            if header is not None:
                meta = _summary_meta(path, header)
                if meta is None:
                    logger.warning("stored header of %s unusable: reading it again", path.name)
                    continue
            mark, comment = marks.get(content, (None, ""))
            out[path] = KnownFile(path, content, meta, error, scores.get(content, {}),
                                  states.get(content, "unread"), mark, comment)  # type: ignore[arg-type]
        return out

    def content_of(self, path: Path) -> str | None:
        """The content hash recorded for a path, or None."""
        row = self._db.execute("SELECT content FROM files WHERE path = ?", (str(path),)).fetchone()
        return row[0] if row else None

    def scores_of(self, contents: Sequence[str]) -> dict[str, dict[str, StoredScore]]:
        """Stored results by content, then model id."""
        return self._scores(contents)

    def reader_cases(self, marks: Iterable[Mark]) -> list[ReaderCase]:
        """Files whose current mark is one of ``marks`` (latest mark per image; its known paths)."""
        wanted = tuple(marks)
        bad = [m for m in wanted if m not in MARKS]
        if bad:
            raise ValueError(f"marks must be among {MARKS}, got {bad}")
        rows = self._db.execute(
            "SELECT f.path, m.content, m.mark, m.reader, m.at FROM marks m JOIN files f ON f.content = m.content "
            "WHERE m.id = (SELECT MAX(id) FROM marks WHERE content = m.content) ORDER BY f.path").fetchall()
        return [ReaderCase(Path(p), c, mk, r, at) for p, c, mk, r, at in rows if mk in wanted]

    def audit_rows(self) -> list[tuple[float, str, str, str | None, str | None, str]]:
        """The audit trail, oldest first: (time, reader, action, model id, content, detail)."""
        return self._db.execute("SELECT at, reader, action, model_id, content, detail FROM audit ORDER BY id").fetchall()

    def drift_rows(self, model_id: str | None = None) -> list[DriftRecord]:
        """The drift checks recorded (for one detector, or all), oldest first."""
        sql = "SELECT at, reader, model_id, calibration, folders, report FROM drift"
        rows = self._db.execute(sql + (" WHERE model_id = ?" if model_id else "") + " ORDER BY id",
                                (model_id,) if model_id else ()).fetchall()
        return [DriftRecord(at, reader, mid, cal, folders, json.loads(report)) for at, reader, mid, cal, folders, report in rows]

    def count(self, table: Literal["files", "scores", "reading", "marks", "audit", "drift"]) -> int:
        """Rows in a table (tests, benchmarks)."""
        if table not in ("files", "scores", "reading", "marks", "audit", "drift"):
            raise ValueError(f"unknown table {table!r}")
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def integrity(self) -> str:
        """SQLite's integrity check: "ok" when the file is sound."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _chunks(self, sql: str, keys: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        for i in range(0, len(keys), _IN_CHUNK):
            part = keys[i:i + _IN_CHUNK]
            out += self._db.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return out

    def _scores(self, contents: Sequence[str]) -> dict[str, dict[str, StoredScore]]:
        out: dict[str, dict[str, StoredScore]] = {}
        sql = ("SELECT content, model_id, score, percentile, flagged, threshold, heatmap, error, acquisition FROM scores "
               "WHERE content IN ({})")
        for content, mid, score, pct, flagged, thr, heat, err, acq in self._chunks(sql, contents):
            out.setdefault(content, {})[mid] = StoredScore(
                mid, score, pct, None if flagged is None else bool(flagged), thr,
                json.loads(heat) if heat else None, err, _descriptor(acq))
        return out

    def _states(self, contents: Sequence[str]) -> dict[str, str]:
        return dict(self._chunks("SELECT content, state FROM reading WHERE content IN ({})", contents))

    def _marks(self, contents: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        rows = self._chunks("SELECT content, mark, comment FROM marks WHERE id IN "
                            "(SELECT MAX(id) FROM marks WHERE content IN ({}) GROUP BY content)", contents)
        return {c: (m, t) for c, m, t in rows}

    # ------------------------------------------------------------------ writes (inside begin/commit)
    def put_file(self, path: Path, size: int, mtime_ns: int, content: str, meta: RadiographMeta | None,
                 error: str | None) -> None:
        """Record a file's quick key, content and header summary."""
        header = json.dumps(header_summary(meta)) if meta is not None else None
        self._db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, content, header, error, seen_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (str(path), size, mtime_ns, content, header, error, time.time()))

    def put_scores(self, rows: Sequence[tuple[str, ScoreRow]]) -> None:
        """Store (replace) results as (content, row); a heatmap summary already stored is kept."""
        now = time.time()
        self._db.executemany(  # one call for the batch: the writer thread holds the GIL less
            "INSERT INTO scores (content, model_id, score, percentile, flagged, threshold, error, scored_at, acquisition) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (content, model_id) DO UPDATE SET score = excluded.score, "
            "percentile = excluded.percentile, flagged = excluded.flagged, threshold = excluded.threshold, "
            "error = excluded.error, scored_at = excluded.scored_at, acquisition = excluded.acquisition",
            [(content, r.model_id, r.score, r.percentile, None if r.flagged is None else int(r.flagged), r.threshold,
              r.error, now, None if r.acquisition is None else json.dumps(list(r.acquisition))) for content, r in rows])

    def put_heatmap(self, content: str, model_id: str, summary: dict[str, float]) -> None:
        """Attach a heatmap summary to a stored score (ignored when there is no score yet)."""
        self._db.execute("UPDATE scores SET heatmap = ? WHERE content = ? AND model_id = ?",
                         (json.dumps(summary), content, model_id))

    def set_state(self, content: str, state: ReadState, reader: str) -> None:
        if state not in READ_STATES:
            raise ValueError(f"reading state must be one of {READ_STATES}, got {state!r}")
        self._db.execute("INSERT OR REPLACE INTO reading (content, state, reader, at) VALUES (?, ?, ?, ?)",
                         (content, state, reader, time.time()))

    def add_mark(self, content: str, mark: Mark | None, comment: str, reader: str) -> None:
        if mark is not None and mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS} or None, got {mark!r}")
        self._db.execute("INSERT INTO marks (content, mark, comment, reader, at) VALUES (?, ?, ?, ?, ?)",
                         (content, mark, comment, reader, time.time()))

    def put_drift(self, record: DriftRecord) -> None:
        """Record a drift check (``record.report``: :meth:`engine.drift.DriftReport.to_dict`)."""
        r = record.report
        self._db.execute(
            "INSERT INTO drift (at, reader, model_id, calibration, folders, n, p_value, drift, specificity_promised, "
            "specificity_estimated, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.at, record.reader, record.model_id, record.calibration, record.folders, int(r["n"]),
             float(r["p_value"]), int(bool(r["drift"])), float(r["specificity_promised"]),
             None if r.get("specificity_estimated") is None else float(r["specificity_estimated"]),
             json.dumps(r, sort_keys=True)))

    def audit(self, action: str, reader: str, model_id: str | None = None, content: str | None = None,
              detail: str = "") -> None:
        """Append to the audit trail (callers keep paths and header values out of ``detail``)."""
        self._db.execute("INSERT INTO audit (at, reader, action, model_id, content, detail) VALUES (?, ?, ?, ?, ?, ?)",
                         (time.time(), reader, action, model_id, content, detail))


# ====================================================================== the writer thread
@dataclass
class _Op:
    prepare: Callable[[StudyDatabase], Any] | None  # outside the write transaction (reads, hashing)
    apply: Callable[[StudyDatabase, Any], Any] | None  # inside it
    done: Callable[[Any], None] | None  # after the commit, with apply's (or prepare's) result
    reads: bool = False  # prepare reads the database: it must see every earlier apply


@dataclass(frozen=True)
class FileToRegister:
    """A file the app listed by reading its header (not known to the database yet)."""

    path: Path
    meta: RadiographMeta | None
    error: str | None


class StudyStore:
    """The study database in a thread of its own: the caller never waits for SQLite or a hash.

    Operations are queued; the thread takes every queued operation (up to ``max_batch``; after a
    write it waits up to ``linger_s`` for more, so that a stream of scores makes a few large
    transactions rather than many small ones), runs
    their preparation (reads, file hashing) outside any transaction, applies them all in one
    write transaction (each in a savepoint: one bad operation loses nothing else), then calls
    their callbacks, from this thread (a Qt caller passes a signal's ``emit``). Order is kept:
    an operation sees every one queued before it.

    Args:
        path: the database file.
        on_error: called (from the thread) with a message when an operation fails.
        max_batch: operations per transaction.
        linger_s: how long a write waits for others to share its transaction.
    """

    def __init__(self, path: Path, on_error: Callable[[str], None] | None = None, max_batch: int = 5000,
                 linger_s: float = 0.1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0.0 <= linger_s <= 5.0:
            raise ValueError(f"linger_s must be in [0, 5] seconds, got {linger_s}")
        self._linger_s = linger_s
        self.path = Path(path)
        self._on_error = on_error
        self._max_batch = max_batch
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: StudyDatabaseError | None = None
        self._content: dict[Path, str] = {}  # path -> content hash (thread-side cache)
        self._closing = threading.Event()  # hashing and listing stop early: closing never waits on disks
        self.transactions = 0  # committed write transactions (benchmarks)
        self.cpu_seconds = 0.0  # CPU time of the writer thread (benchmarks)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        """Open the database in the thread.

        Raises:
            StudyDatabaseError: the database cannot be used (it is left unchanged).
        """
        self._thread = threading.Thread(target=self._run, name="study-db", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued so far is committed; False on timeout."""
        event = threading.Event()
        self._submit(_Op(None, None, lambda _r: event.set()))
        return event.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Commit what is queued and end the thread (files not hashed yet are left for next time)."""
        self._closing.set()
        if self.running:
            self._queue.put(None)
            if self._thread is not None:
                self._thread.join(timeout_s)

    # ------------------------------------------------------------------ operations
    def scan(self, roots: Sequence[Path], done: Callable[[tuple[list[KnownFile], list[Path]]], None]) -> None:
        """List the image files under ``roots``; ``done((known, unknown))`` in scan order.

        Known files are those whose quick key matches (no file is opened); ``unknown`` need
        their header read (new or changed files).
        """
        def prepare(db: StudyDatabase) -> tuple[list[KnownFile], list[Path]]:
            from cxrscreen.engine.io import list_image_files

            stats: list[tuple[Path, int, int]] = []
            order: list[Path] = []
            for path in list_image_files(roots):
                if self._closing.is_set():
                    raise OSError("closing: listing abandoned")
                order.append(path)
                key = stat_key(path)
                if key is not None:
                    stats.append((path, *key))
            known = db.known(stats)
            for path, k in known.items():
                self._content[path] = k.content
            return [known[p] for p in order if p in known], [p for p in order if p not in known]

        self._submit(_Op(prepare, None, done, reads=True))

    def register(self, files: Sequence[FileToRegister],
                 done: Callable[[dict[Path, dict[str, StoredScore]]], None] | None = None) -> None:
        """Hash and record newly indexed files; ``done`` gets the scores already stored for their
        content (a renamed or copied image), by path."""
        def prepare(db: StudyDatabase) -> list[tuple[FileToRegister, int, int, str]]:
            out = []
            for f in files:
                if self._closing.is_set():
                    break
                key = stat_key(f.path)
                if key is None:
                    continue
                try:
                    content = content_hash(f.path)
                except OSError as exc:
                    logger.info("cannot hash %s: %s", f.path.name, exc)
                    continue
                out.append((f, *key, content))
            return out

        def apply(db: StudyDatabase, hashed: list[tuple[FileToRegister, int, int, str]]) -> dict[Path, dict[str, StoredScore]]:
            for f, size, mtime, content in hashed:
                db.put_file(f.path, size, mtime, content, f.meta, f.error)
                self._content[f.path] = content
            scores = db.scores_of(sorted({c for *_, c in hashed}))
            return {f.path: scores[c] for f, _, _, c in hashed if c in scores}

        self._submit(_Op(prepare, apply, done))

    def put_scores(self, rows: Sequence[ScoreRow]) -> None:
        """Store results (files must have been listed or registered before)."""
        def apply(db: StudyDatabase, _p: Any) -> None:
            resolved = [(self._resolve(db, row.path), row) for row in rows]
            db.put_scores([(c, row) for c, row in resolved if c is not None])
        self._submit(_Op(None, apply, None))

    def put_heatmap(self, path: Path, model_id: str, summary: dict[str, float]) -> None:
        """Attach a heatmap summary to a file's stored score."""
        self._on_content(path, lambda db, c: db.put_heatmap(c, model_id, summary))

    def set_state(self, path: Path, state: ReadState, reader: str, model_id: str | None = None) -> None:
        """Record a reading state (and audit it)."""
        def apply(db: StudyDatabase, c: str) -> None:
            db.set_state(c, state, reader)
            db.audit(state, reader, model_id, c)
        self._on_content(path, apply)

    def add_mark(self, path: Path, mark: Mark | None, comment: str, reader: str, model_id: str | None = None) -> None:
        """Record a reader's mark and comment (and audit it; the comment text is not audited)."""
        def apply(db: StudyDatabase, c: str) -> None:
            db.add_mark(c, mark, comment, reader)
            db.audit("marked", reader, model_id, c, f"mark={mark or 'none'}" + ("; comment" if comment else ""))
        self._on_content(path, apply)

    def audit(self, action: str, reader: str, model_id: str | None = None, detail: str = "") -> None:
        """Append an audit row (no path or header value may be in ``detail``)."""
        self._submit(_Op(None, lambda db, _p: db.audit(action, reader, model_id, None, detail), None))

    def record_drift(self, record: DriftRecord) -> None:
        """Store a worklist's drift check."""
        self._submit(_Op(None, lambda db, _p: db.put_drift(record), None))

    def query(self, read: Callable[[StudyDatabase], Any], done: Callable[[Any], None]) -> None:
        """Run a read-only function in the thread; ``done`` gets its result."""
        self._submit(_Op(read, None, done, reads=True))

    # ------------------------------------------------------------------ internals
    def _resolve(self, db: StudyDatabase, path: Path) -> str | None:
        content = self._content.get(path)
        if content is None:
            content = db.content_of(path)
            if content is None:
                logger.info("study database: %s is not registered; change not stored", path.name)
                return None
            self._content[path] = content
        return content

    def _on_content(self, path: Path, fn: Callable[[StudyDatabase, str], None]) -> None:
        def apply(db: StudyDatabase, _p: Any) -> None:
            content = self._resolve(db, path)
            if content is not None:
                fn(db, content)
        self._submit(_Op(None, apply, None))

    def _submit(self, op: _Op) -> None:
        if not self.running:
            raise RuntimeError("the study database is not open")
        self._queue.put(op)

    def _run(self) -> None:
        try:
            db = StudyDatabase(self.path)
        except StudyDatabaseError as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            carry: _Op | None = None
            while not stop:
                first = carry if carry is not None else self._queue.get()
                carry = None
                if first is None:
                    break
                ops = [first]
                writes = first.apply is not None
                # writes wait a moment for more: fewer, larger transactions (less GIL traffic)
                deadline = time.monotonic() + (self._linger_s if writes else 0.0)
                while len(ops) < self._max_batch:
                    try:
                        wait = deadline - time.monotonic()
                        op = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stop = True
                        break
                    if op.reads and writes:  # it must see this batch's writes: next batch
                        carry = op
                        break
                    ops.append(op)
                    writes = writes or op.apply is not None
                t0 = time.thread_time()
                self._run_batch(db, ops)
                self.cpu_seconds += time.thread_time() - t0
            if carry is not None:
                self._run_batch(db, [carry])
        finally:
            db.close()

    def _run_batch(self, db: StudyDatabase, ops: list[_Op]) -> None:
        results: list[Any] = []
        for op in ops:
            try:
                results.append(op.prepare(db) if op.prepare is not None else None)
            except (OSError, sqlite3.Error, ValueError) as exc:
                self._error(f"study database: {exc}")
                results.append(exc)
        if any(op.apply is not None for op in ops):
            for attempt in range(3):  # a second window may hold the lock past the busy timeout
                try:
                    results = self._apply(db, ops, results)
                    break
                except sqlite3.OperationalError as exc:
                    db.rollback()
                    if attempt == 2:
                        self._error(f"study database busy: {len(ops)} changes not saved ({exc})")
                        return
        for op, result in zip(ops, results):
            if op.done is not None and not isinstance(result, Exception):
                try:
                    op.done(result)
                except Exception:  # a caller's callback must not end the writer
                    logger.exception("study database callback failed")

    def _apply(self, db: StudyDatabase, ops: list[_Op], prepared: list[Any]) -> list[Any]:
        results = list(prepared)
        db.begin()
        for i, op in enumerate(ops):
            if op.apply is None or isinstance(prepared[i], Exception):
                continue
            db.execute("SAVEPOINT op")
            try:
                results[i] = op.apply(db, prepared[i])
                db.execute("RELEASE op")
            except (sqlite3.IntegrityError, ValueError) as exc:
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                self._error(f"study database: a change was refused ({exc})")
                results[i] = exc
        db.commit()
        self.transactions += 1
        return results

    def _error(self, message: str) -> None:
        logger.warning("%s", message)
        if self._on_error is not None:
            self._on_error(message)


def stat_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _descriptor(text: str | None) -> tuple[float, ...] | None:
    """A stored acquisition descriptor, or None (none stored, or not four finite numbers)."""
    if not text:
        return None
    try:
        return as_descriptor(json.loads(text))
    except ValueError:
        return None

