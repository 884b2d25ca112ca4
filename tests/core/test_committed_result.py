"""Commands return the incident as they committed it, without reading it again.

Opening, answering and cancelling are the commands Slack sends most; each returned a
fresh read of the incident (three queries) right after its commit. They now return the
object their session committed. These tests hold that object to a fresh read, field by
field, steps and approvals included, and check that no read happened after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, inspect

from bot.models import Incident
from bot.service import Rollbot

PRODUCTION_URL = "fake://main"


@pytest.fixture(autouse=True)
def production_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fake_provider import reset_platform

    monkeypatch.setenv("ROLLBOT_TEST_PRODUCTION_URL", PRODUCTION_URL)
    reset_platform(databases={"main": "0002_bad"})


def _fields(incident: Incident) -> dict[str, Any]:
    columns = {c.key: getattr(incident, c.key) for c in inspect(Incident).column_attrs}
    steps = [
        {c.key: getattr(s, c.key) for c in inspect(type(s)).column_attrs} for s in incident.steps
    ]
    approvals = [
        {c.key: getattr(a, c.key) for c in inspect(type(a)).column_attrs}
        for a in incident.approvals
    ]
    return columns | {"steps": steps, "approvals": approvals}


@contextmanager
def statements(bot: Rollbot) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    def committed(_conn: Any) -> None:
        seen.append(COMMIT)

    listeners = (("before_cursor_execute", record), ("commit", committed))
    for name, listener in listeners:
        event.listen(bot.store.engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in listeners:
            event.remove(bot.store.engine, name, listener)


COMMIT = "-- commit"


def _after_commit(seen: list[str]) -> list[str]:
    assert COMMIT in seen, "the command committed nothing"
    return seen[seen.index(COMMIT) + 1 :]


def _open(bot: Rollbot) -> Incident:
    return bot.open_incident("alice", "users.new_column breaks login", environment="production")


COMMANDS: dict[str, Callable[[Rollbot, int], Incident]] = {
    "answer (triages)": lambda bot, i: bot.answer(i, "data_corruption", "alice"),
    "cancel": lambda bot, i: bot.cancel(i, "alice", reason="wrong database"),
}


def test_opening_returns_the_incident_as_stored_and_reads_nothing_after(bot: Rollbot) -> None:
    with statements(bot) as seen:
        incident = _open(bot)
    assert _after_commit(seen) == [], f"opening read again after its commit: {seen}"
    assert _fields(incident) == _fields(bot.get(incident.id))
    assert incident.steps == [] and incident.approvals == []


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_returns_the_incident_as_stored(bot: Rollbot, name: str) -> None:
    opened = _open(bot)
    with statements(bot) as seen:
        incident = COMMANDS[name](bot, opened.id)
    assert _after_commit(seen) == [], "the command read the incident again after its commit"
    assert _fields(incident) == _fields(bot.get(incident.id))


def test_a_cancel_with_steps_returns_them_as_stored(bot: Rollbot) -> None:
    opened = _open(bot)
    bot.answer(opened.id, "data_corruption", "alice")
    chosen = bot.choose_method(opened.id, "pitr", "alice")
    assert chosen.steps
    incident = bot.cancel(opened.id, "alice")
    assert _fields(incident) == _fields(bot.get(incident.id))
    assert {s.status for s in incident.steps} == {"cancelled"}


def test_anything_not_loaded_is_read_again(bot: Rollbot) -> None:
    """The fallback: an incident whose steps were never loaded comes back from a fresh read."""
    opened = _open(bot)
    with bot.store.read() as session:
        bare = session.get(Incident, opened.id)
    assert bare is not None and "steps" in inspect(bare).unloaded
    again = bot._as_committed(bare)
    assert again is not bare
    assert _fields(again) == _fields(bot.get(opened.id))
