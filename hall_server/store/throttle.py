"""The login throttle, in the store: failed logins counted per account and per client address.

Counted in SQLite, not in a process's memory, so a restart forgets nothing and no table of junk usernames
can push a locked account out. Every attempt is counted *before* its password is checked, inside one
``BEGIN IMMEDIATE`` transaction, so parallel attempts are counted one after the other: the sixth of 24
simultaneous wrong passwords is already refused without the argon2 check. A success takes its own count
back (the account's count is cleared; the address's loses this one attempt), so spraying many usernames
from one address is slowed by the address's count whatever the accounts. A key that is locked waits
``lockout_s``, doubling with every failure past the limit; rows quiet for a day are deleted.

Keys are ``account:<lower-case name>`` (also for names that do not exist: a refusal never tells which
accounts do) and ``address:<client address>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from hall_server.store.db import write_transaction

#: Rows untouched for this long are forgotten.
FORGET_AFTER_S = 24 * 3600


@dataclass(frozen=True)
class Limits:
    max_failures: int = 5  # per account
    max_failures_per_address: int = 50
    lockout_s: float = 30.0


@dataclass
class Throttle:
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.time

    def _limit(self, key: str) -> int:
        return (
            self.limits.max_failures_per_address if key.startswith("address:") else self.limits.max_failures
        )

    def attempt(self, db: sqlite_utils.Database, username: str, address: str) -> float:
        """Count one attempt for the account and the address; 0 when it may go on, else the seconds to wait
        (a refused attempt is not counted: waiting is enough)."""
        now = self.clock()
        keys = (f"account:{username.lower()[:128]}", f"address:{address[:64]}")
        with write_transaction(db):
            db.execute("DELETE FROM login_throttle WHERE last_at < ? AND locked_until < ?",
                       [now - FORGET_AFTER_S, now])  # fmt: skip
            rows = {
                key: (failures, locked_until)
                for key, failures, locked_until in db.execute(
                    "SELECT key, failures, locked_until FROM login_throttle WHERE key IN (?, ?)", list(keys)
                )
            }
            wait = max((until - now for failures, until in rows.values() if until > now), default=0.0)
            if wait > 0:
                return wait
            for key in keys:
                failures = rows.get(key, (0, 0.0))[0] + 1
                over = failures - self._limit(key)
                locked_until = now + self.limits.lockout_s * 2 ** min(over, 10) if over >= 0 else 0.0
                db.execute(
                    "INSERT INTO login_throttle (key, failures, locked_until, last_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                    "locked_until = excluded.locked_until, last_at = excluded.last_at",
                    [key, failures, locked_until, now],
                )
        return 0.0

    def succeeded(self, db: sqlite_utils.Database, username: str, address: str) -> None:
        """The attempt was right: clear the account's count, take this attempt off the address's."""
        with write_transaction(db):
            db.execute("DELETE FROM login_throttle WHERE key = ?", [f"account:{username.lower()[:128]}"])
            db.execute(
                "UPDATE login_throttle SET failures = max(failures - 1, 0), locked_until = 0 "
                "WHERE key = ? AND failures <= ?",
                [f"address:{address[:64]}", self.limits.max_failures_per_address],
            )
