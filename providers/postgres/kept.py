"""The databases a swap restore keeps (``<db>_before_restore_<stamp>``): undo and retention.

A swap restore renames the replaced database instead of dropping it, so the state
before the restore is one rename away. Undo swaps it back in, keeping the current
state in turn under a new ``_before_restore_`` name (an undo is itself undoable).
Left alone, kept databases pile up; retention drops the old ones (keep the N newest,
keep those younger than D days), never the newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from bot.errors import ProviderError
from providers.postgres.conn import connect, dbname

KEPT_SUFFIX = "_before_restore_"
_STAMP = re.compile(r"_before_restore_(\d{8}_\d{6})$")


@dataclass(frozen=True)
class KeptDatabase:
    name: str
    kept_at: datetime
    size: int


def kept_databases(url: str) -> list[KeptDatabase]:
    """The kept databases of ``url``'s database, newest first."""
    from providers.postgres.restore import _maintenance_url, _suffixed

    prefix = _suffixed(dbname(url), f"{KEPT_SUFFIX}00000000_000000")[: -len("00000000_000000")]
    with connect(_maintenance_url(url), autocommit=True) as maint:
        rows = maint.execute(
            "SELECT datname, pg_database_size(oid) FROM pg_database WHERE starts_with(datname, %s)",
            (prefix,),
        ).fetchall()
    found = []
    for name, size in rows:
        m = _STAMP.search(name)
        if m:
            kept_at = datetime.strptime(m.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
            found.append(KeptDatabase(name, kept_at, int(size)))
    return sorted(found, key=lambda k: k.kept_at, reverse=True)


def kept_database(url: str, name: str) -> KeptDatabase:
    for kept in kept_databases(url):
        if kept.name == name:
            return kept
    raise ProviderError(
        f"database {name} is not a kept database of {dbname(url)} (it was dropped, or never "
        "kept); nothing to swap back"
    )


@dataclass(frozen=True)
class KeptRetention:
    keep: list[KeptDatabase]
    drop: list[KeptDatabase]

    def lines(self) -> list[str]:
        out = [f"drop kept database {k.name} ({k.size / 1e6:.1f} MB)" for k in self.drop]
        out += [f"keep {k.name}" for k in self.keep]
        return out or ["no kept databases"]


def plan_kept_retention(
    url: str, keep_last: int | None, keep_days: int | None, now: datetime | None = None
) -> KeptRetention:
    """Which kept databases retention drops: outside every keep rule, never the newest."""
    kept = kept_databases(url)
    if keep_last is None and keep_days is None:
        return KeptRetention(kept, [])
    now = now or datetime.now(UTC)
    keep, drop = [], []
    for i, k in enumerate(kept):
        young = keep_days is not None and k.kept_at >= now - timedelta(days=keep_days)
        recent = keep_last is not None and i < keep_last
        (keep if i == 0 or young or recent else drop).append(k)
    return KeptRetention(keep, drop)


def drop_kept(url: str, retention: KeptRetention) -> None:
    from providers.postgres.restore import _drop_if_exists, _maintenance_url

    with connect(_maintenance_url(url), autocommit=True) as maint:
        for k in retention.drop:
            if KEPT_SUFFIX not in k.name:
                raise ProviderError(f"refusing to drop {k.name}: not a kept database")
            _drop_if_exists(maint, k.name)


def swap_back(url: str, kept: str, now: datetime | None = None) -> str:
    """Put ``kept`` back as the database; the current one is kept as a new kept database."""
    from providers.postgres.restore import _maintenance_url, _swap

    kept_database(url, kept)
    current_kept = free_kept_name(url, now or datetime.now(UTC))
    with connect(_maintenance_url(url), autocommit=True) as maint:
        maint.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(kept))
        )
        _swap(maint, dbname(url), kept, current_kept)
    return current_kept


def free_kept_name(url: str, now: datetime) -> str:
    """A kept name stamped ``now``, or the first later second no kept database has.

    Stamps have one-second resolution, so an undo in the second its restore kept the
    database (or after another keep that second) would otherwise collide with it.
    """
    from providers.postgres.restore import _stamp, _suffixed

    taken = {k.name for k in kept_databases(url)}
    at = now.replace(microsecond=0)
    while (name := _suffixed(dbname(url), f"{KEPT_SUFFIX}{_stamp(at)}")) in taken:
        at += timedelta(seconds=1)
    return name
