"""The durable inbox: recorded once, refused past the high-water mark, claimed once per
incident in order, and given up by dead workers."""

from __future__ import annotations

from sqlalchemy import event

from bot.inbox import Acceptance, Inbox, InboxStatus, NewRequest
from bot.service import Rollbot
from tests.core_fixtures import Clock


def _request(key: str, incident: int | None = None) -> NewRequest:
    return NewRequest(key, "slack", "answer", "alice", incident, {"value": key})


def test_recorded_once_and_refused_past_the_high_water_mark(bot: Rollbot, clock: Clock) -> None:
    inbox = Inbox(bot.store, high_water=2, clock=clock)
    assert inbox.accept(_request("a")) is Acceptance.RECORDED
    assert inbox.accept(_request("a")) is Acceptance.DUPLICATE  # a Slack retry
    assert inbox.accept(_request("b")) is Acceptance.RECORDED
    assert inbox.accept(_request("c")) is Acceptance.FULL
    assert inbox.counts() == {"pending": 2}


def test_an_ack_is_one_statement_whatever_the_backlog(bot: Rollbot, clock: Clock) -> None:
    """The high-water mark is checked by the insert itself: no count beside it, recorded or
    refused (a separate count had been a second round trip on every other ack)."""
    inbox = Inbox(bot.store, high_water=1, clock=clock)
    statements: list[str] = []
    engine = bot.store.inbox_side.engine

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert inbox.accept(_request("first")) is Acceptance.RECORDED
        assert statements == ["INSERT"]
        assert inbox.accept(_request("second")) is Acceptance.FULL
        assert statements == ["INSERT", "INSERT"]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert inbox.counts() == {"pending": 1}


def test_on_sqlite_no_inbox_write_holds_the_lock_for_python(bot: Rollbot, clock: Clock) -> None:
    """SQLite keeps a file's write lock until a statement's RETURNING rows are read, in
    Python, after the thread has the GIL (and, in a worker that yields, a CPU) again: an
    ack's insert then waited behind a claim. So on SQLite the inbox writes count rows and a
    claim reads its row after the write; PostgreSQL (row locks) keeps one round trip each."""
    inbox = Inbox(bot.store, clock=clock)
    statements: list[str] = []
    engine = bot.store.inbox_side.engine

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()).upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert inbox.accept(_request("r", 4)) is Acceptance.RECORDED
        item = inbox.claim("w1")
        assert item is not None and (item.key, item.claimed_by, item.attempts) == ("r", "w1", 1)
        inbox.finish(item.id, InboxStatus.DONE)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    writes = [s for s in statements if not s.startswith("SELECT")]
    assert [w.split()[0] for w in writes] == ["INSERT", "UPDATE", "UPDATE"]
    if bot.store.dialect == "sqlite":
        assert not [w for w in writes if "RETURNING" in w]
        assert [s.split()[0] for s in statements] == [
            "INSERT",
            "SELECT",
            "UPDATE",
            "SELECT",
            "UPDATE",
        ]
    else:
        assert [s.split()[0] for s in statements] == ["INSERT", "SELECT", "UPDATE", "UPDATE"]
    assert inbox.counts() == {"done": 1}


def test_one_row_per_incident_at_a_time_in_order(bot: Rollbot, clock: Clock) -> None:
    inbox = Inbox(bot.store, clock=clock)
    for key, incident in (("1", 7), ("2", 7), ("3", 8), ("4", None)):
        inbox.accept(_request(key, incident))
    first = inbox.claim("w1")
    second = inbox.claim("w2")
    third = inbox.claim("w3")
    assert first is not None and second is not None and third is not None
    assert [first.key, second.key, third.key] == ["1", "3", "4"]  # "2" waits for "1"
    assert inbox.claim("w4") is None
    inbox.finish(first.id, InboxStatus.DONE)
    after = inbox.claim("w4")
    assert after is not None and after.key == "2"


def test_rows_of_a_dead_worker_are_claimable_at_once(bot: Rollbot, clock: Clock) -> None:
    inbox = Inbox(bot.store, clock=clock)
    inbox.accept(_request("x", 9))
    taken = inbox.claim("host:999999:dead")
    assert taken is not None and inbox.claim("w2") is None  # its lease still runs
    assert inbox.release_orphans(lambda owner: owner.startswith("host:999999")) == 1
    again = inbox.claim("w2")
    assert again is not None and again.key == "x" and again.attempts == 2


def test_a_claimed_row_is_returned_as_stored_by_the_claim(bot: Rollbot, clock: Clock) -> None:
    """The claimed row is what the worker handles: claimer, lease, attempts and payload as
    the database now holds them (from the claim's ``RETURNING``, or on SQLite read after it)."""
    inbox = Inbox(bot.store, clock=clock)
    inbox.accept(_request("k", 3))
    item = inbox.claim("w1")
    assert item is not None
    assert (item.key, item.incident_id, item.payload) == ("k", 3, {"value": "k"})
    assert (item.status, item.claimed_by, item.attempts) == ("claimed", "w1", 1)
    assert item.lease_until == clock() + inbox.lease
    assert inbox.counts() == {"claimed": 1}
