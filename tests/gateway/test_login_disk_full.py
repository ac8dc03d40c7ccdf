"""When the gateway's file cannot be written (disk full: when operators must log in to see the
`disk_low` alert) login limits and sessions carry on in memory, under the same limits. The file
is made full for real: SQLite's max_page_count at its current size."""

import sqlite3
from pathlib import Path

from gateway.store import Store
from gateway.store.auth_store import AuthStore, LoginLimits

LIMITS = LoginLimits(per_address=10, per_account=5, window_s=60)


def _full(store: Store) -> None:
    """Cap the file at its size, then fill the room left in its pages: the tables' own pages
    too (each table and index keeps its free space to itself), with rows of an address and a
    user the tests never use."""
    db = store._db()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    fillers = [
        "INSERT INTO login_attempts (address, account, t_ms) VALUES ('192.0.2.1', 'x', 1000000)",
        "INSERT INTO web_sessions (sid, user, created_ms, expires_ms) "
        "VALUES (hex(randomblob(9)), 'filler', 1000000, 9000000)",
    ]
    for sql in fillers:
        try:
            while True:
                db.execute(sql)
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)


def test_limits_and_sessions_hold_while_the_file_is_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    auth = AuthStore(store)
    stored = auth.reserve_attempt("10.0.0.9", "op", LIMITS, now=1_000_000)
    assert stored.allowed and stored.attempt_id and stored.attempt_id > 0
    _full(store)
    # 4 more wrong guesses fit the per-account limit of 5 (one already in the file) ...
    held = [auth.reserve_attempt("10.0.0.9", "op", LIMITS, now=1_000_100) for _ in range(4)]
    assert all(r.allowed and r.attempt_id < 0 for r in held)
    # ... the 6th is refused though nothing could be written
    refused = auth.reserve_attempt("10.0.0.9", "op", LIMITS, now=1_000_200)
    assert not refused.allowed and refused.retry_after_s > 0
    # the real operator from another address still gets a check and a session
    real = auth.reserve_attempt("10.0.0.7", "op", LIMITS, now=1_000_300)
    assert real.allowed
    auth.attempt_succeeded(real.attempt_id)
    session = auth.create_session("op", 3600, now=1_000_300)
    assert auth.live_session(session.sid, now=1_000_400) == session
    assert auth.revoke_session(session.sid, now=1_000_500)
    assert auth.live_session(session.sid, now=1_000_600) is None
    store.close()


def test_a_logout_while_full_refuses_a_session_from_the_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    auth = AuthStore(store)
    session = auth.create_session("op", 3600, now=1_000_000)
    _full(store)
    # the file still holds the session; the logout cannot be written there
    auth.revoke_session(session.sid, now=1_000_100)
    assert auth.live_session(session.sid, now=1_000_200) is None
    store.close()


def test_an_attempt_stored_just_before_the_file_fills_still_lets_the_operator_in(
    tmp_path: Path,
) -> None:
    """The attempt's row went in, then the disk filled before the password check finished:
    marking it a success (or not run) cannot be written. That must not fail the login (the
    e2e disk-full test once got a 500 here); the row stays counted as a failure."""
    store = Store(tmp_path / "gateway.db")
    auth = AuthStore(store)
    checked = auth.reserve_attempt("10.0.0.7", "op", LIMITS, now=1_000_000)
    skipped = auth.reserve_attempt("10.0.0.7", "op", LIMITS, now=1_000_001)
    assert checked.attempt_id > 0 and skipped.attempt_id > 0  # both in the file
    # nothing more can be written: an UPDATE in place may still fit a full file, while a real
    # full disk refuses the WAL append, so refuse every write the way SQLite does
    store._db().execute("PRAGMA query_only = ON")
    auth.attempt_succeeded(checked.attempt_id)
    auth.attempt_not_run(skipped.attempt_id)
    session = auth.create_session("op", 3600, now=1_000_100)
    assert auth.live_session(session.sid, now=1_000_200) == session
    counted = store._db().execute(
        "SELECT count(*) FROM login_attempts WHERE address = '10.0.0.7' AND ok = 0"
    )
    assert counted.fetchone()[0] == 2  # stricter by these two within the window, never looser
    store.close()
