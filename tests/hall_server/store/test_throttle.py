"""The login throttle in the store: the wait doubles, a success forgets, a restart forgets nothing, junk
usernames evict nothing, parallel wrong passwords are counted one after the other, and spraying usernames
from one address is slowed."""

from __future__ import annotations

import threading

import pytest

from hall_server import staff
from hall_server.store import db, users
from hall_server.store.throttle import Limits, Throttle

PASSWORD = "correct horse battery"


def _store(tmp_path):
    data_dir = tmp_path / "data"
    db.migrate(data_dir)
    return data_dir, db.connect(data_dir)


def test_the_wait_doubles_and_a_success_forgets(tmp_path):
    _, store = _store(tmp_path)
    now = [1000.0]
    throttle = Throttle(Limits(max_failures=2, max_failures_per_address=100, lockout_s=10), lambda: now[0])
    assert throttle.attempt(store, "Anna", "10.0.0.1") == 0
    assert throttle.attempt(store, "anna", "10.0.0.1") == 0  # the second may still try; the third waits
    assert throttle.attempt(store, "anna", "10.0.0.1") == 10
    assert throttle.attempt(store, "anna", "10.0.0.2") == 10  # per account, from anywhere
    assert throttle.attempt(store, "ben", "10.0.0.1") == 0  # another account is not affected
    now[0] += 11
    assert throttle.attempt(store, "anna", "10.0.0.1") == 0
    assert throttle.attempt(store, "anna", "10.0.0.1") == 20  # doubled
    now[0] += 21
    assert throttle.attempt(store, "anna", "10.0.0.1") == 0
    throttle.succeeded(store, "anna", "10.0.0.1")
    assert throttle.attempt(store, "anna", "10.0.0.1") == 0
    assert throttle.attempt(store, "anna", "10.0.0.1") == 0


def test_a_restart_forgets_nothing_and_junk_usernames_evict_nothing(tmp_path):
    data_dir, store = _store(tmp_path)
    limits = Limits(max_failures=3, max_failures_per_address=100_000, lockout_s=60)
    now = [1000.0]  # the store's clock is wall time; a fixed one keeps a slow machine from waiting it out
    throttle = Throttle(limits, lambda: now[0])
    for _ in range(3):
        throttle.attempt(store, "anna", "10.0.0.9")
    # 10,050 failures with names that do not exist, from many addresses: nothing pushes anna out
    for n in range(10_050):
        throttle.attempt(store, f"junk{n}", f"10.1.{n // 250}.{n % 250}")
    store.close()
    again = db.connect(data_dir)  # a new process after a restart
    now[0] += 30  # half the lockout later, in a new process
    assert Throttle(limits, lambda: now[0]).attempt(again, "anna", "10.0.0.9") == 30
    again.close()


def test_spraying_usernames_from_one_address_is_slowed(tmp_path):
    _, store = _store(tmp_path)
    throttle = Throttle(Limits(max_failures=5, max_failures_per_address=10, lockout_s=30))
    waits = [throttle.attempt(store, f"user{n}", "10.0.0.66") for n in range(12)]
    assert waits[:10] == [0] * 10 and all(w > 0 for w in waits[10:])
    assert throttle.attempt(store, "user0", "10.0.0.67") == 0  # the same names from elsewhere are not


def test_parallel_wrong_passwords_are_counted_one_after_the_other(tmp_path):
    """24 threads try wrong passwords for one account at once through the real login (argon2): only the
    first few get a password check, the others are refused as throttled."""
    data_dir, store = _store(tmp_path)
    users.create_user(store, "anna", PASSWORD, ["invigilator"])
    store.close()
    throttle = Throttle(Limits(max_failures=5, max_failures_per_address=1000, lockout_s=60))
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(24)

    def attempt() -> None:
        mine = db.connect(data_dir)
        barrier.wait()
        try:
            staff.login(mine, throttle, "anna", "wrong password!", "10.0.0.5")
        except staff.LoginRefused as exc:
            with lock:
                outcomes.append("throttled" if exc.wait_s else "wrong")
        finally:
            mine.close()

    threads = [threading.Thread(target=attempt) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("wrong") == 5 and outcomes.count("throttled") == 19
    store = db.connect(data_dir)
    with pytest.raises(staff.LoginRefused, match="too many failed logins"):
        staff.login(store, throttle, "anna", PASSWORD, "10.0.0.5")  # even the right password waits now
    store.close()
