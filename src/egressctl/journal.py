"""The apply journal: sqlite beside the plan, holding intent, created ids and progress per instance,
with a lock so that one run at a time works on a plan.

The cloud stays the source of truth (every step looks before it acts); the journal is what makes a
crash cheap to resume: which step each instance reached, the ids it created, and the generation
that keys deterministic ClientTokens.  Never a secret: only ids, states and messages.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
STATUSES = ("pending", "running", "done", "failed", "paused", "rolling_back", "rolled_back")


class JournalError(RuntimeError):
    pass


class Locked(JournalError):
    pass


@dataclass
class Record:
    instance_id: str
    status: str = "pending"
    step: str = ""
    generation: int = 1
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    updated: float = 0.0


def paths_for(plan_path: Path) -> tuple[Path, Path]:
    return plan_path.with_name(plan_path.name + ".journal"), plan_path.with_name(plan_path.name + ".lock")


class Journal:
    def __init__(self, path: Path, plan_id: str, plan_checksum: str, create: bool = True):
        self.path = path
        if not path.exists() and not create:
            raise JournalError(f"{path}: no journal (has this plan been applied?)")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            row = self._db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise JournalError(f"{path}: the journal is corrupted ({row[0] if row else 'no answer'})")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS instances (instance_id TEXT PRIMARY KEY, "
                             "status TEXT NOT NULL, step TEXT NOT NULL, generation INTEGER NOT NULL, "
                             "data TEXT NOT NULL, error TEXT NOT NULL, updated REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "ts REAL NOT NULL, instance_id TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL, "
                             "detail TEXT NOT NULL)")
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise JournalError(f"{path}: the journal is not readable ({e}); move it away to start over, after "
                               "checking the cloud with `egressctl status` and `egressctl audit`") from None
        if not meta:
            with self._tx() as db:
                db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", str(SCHEMA)), ("plan_id", plan_id),
                                                                  ("plan_checksum", plan_checksum)])
        else:
            if meta.get("schema") != str(SCHEMA):
                raise JournalError(f"{path}: journal schema {meta.get('schema')}, this egressctl writes {SCHEMA}")
            if meta.get("plan_id") != plan_id or meta.get("plan_checksum") != plan_checksum:
                raise JournalError(f"{path}: this journal belongs to plan {meta.get('plan_id')}, not to {plan_id}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def ensure(self, instance_ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO instances VALUES (?, 'pending', '', 1, '{}', '', ?)",
                           [(i, time.time()) for i in instance_ids])

    def get(self, instance_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM instances ORDER BY instance_id").fetchall()
        return [_record(r) for r in rows]

    def update(self, rec: Record, *, status: str | None = None, step: str | None = None, error: str | None = None,
               generation: int | None = None, **data: Any) -> Record:
        if status is not None:
            if status not in STATUSES:
                raise ValueError(status)
            rec.status = status
        if step is not None:
            rec.step = step
        if error is not None:
            rec.error = error
        if generation is not None:
            rec.generation = generation
        rec.data.update({k: v for k, v in data.items()})
        rec.updated = time.time()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (rec.instance_id, rec.status, rec.step, rec.generation, json.dumps(rec.data, sort_keys=True),
                        rec.error, rec.updated))
        return rec

    def event(self, instance_id: str, step: str, kind: str, **detail: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events (ts, instance_id, step, kind, detail) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), instance_id, step, kind, json.dumps(detail, sort_keys=True)))

    def events(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT ts, instance_id, step, kind, detail FROM events"
        args: tuple[str, ...] = ()
        if instance_id:
            q += " WHERE instance_id=?"
            args = (instance_id,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY id", args).fetchall()
        return [{"ts": r[0], "instance_id": r[1], "step": r[2], "kind": r[3], "detail": json.loads(r[4])} for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple[Any, ...]) -> Record:
    return Record(row[0], row[1], row[2], int(row[3]), json.loads(row[4]), row[5], float(row[6]))


class RunLock:
    """An exclusive flock on ``<plan>.lock``: a second apply (or rollback) on the same plan is refused."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise Locked(f"another egressctl run holds this plan ({holder}); wait for it to finish, or stop it "
                         f"(lock file {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.what} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
