"""Durable state: every acknowledged change is in sqlite (WAL, synchronous=FULL) before the answer
leaves the server, so a restart, even after kill -9, loses nothing that was acknowledged.

Schema (versioned in ``meta``): ``objects(kind, id, data)`` holds each resource as JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class StateError(RuntimeError):
    pass


class Store:
    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "state.db"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, "
                         "data TEXT NOT NULL, PRIMARY KEY (kind, id))")
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StateError(f"{self.path}: state schema version {row[0]}, this vpclab reads version "
                             f"{SCHEMA_VERSION}; start with a new --state-dir")

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def load(self) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        rows = self._db.execute("SELECT kind, data FROM objects").fetchall()
        objs = [(kind, json.loads(data)) for kind, data in rows]
        objs.sort(key=lambda o: o[1].get("seq", 0))
        next_seq = int(self.get_meta("next_seq") or "1")
        return objs, next_seq

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is None

    def write(self, changes: list[tuple[str, str, Any]], next_seq: int) -> None:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN")
            try:
                for kind, rid, obj in changes:
                    if obj is None:
                        cur.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, rid))
                    else:
                        cur.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)",
                                    (kind, rid, json.dumps(obj.to_dict(), separators=(",", ":"))))
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (str(next_seq),))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
