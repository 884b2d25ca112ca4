"""What PITR means on an environment with ``[pitr] tool = "pgbackrest"``: restore into a
new cluster, verify it, then switch (its own approved destructive step); or, with the
explicit option ``in_place``, a verified safety backup and then a ``--delta`` restore."""

from __future__ import annotations

from typing import Any

from bot.methods import StepSpec


def pitr_steps(options: dict[str, Any]) -> list[StepSpec]:
    if options.get("snapshot"):
        from bot.errors import RollbotError

        raise RollbotError(
            "pgBackRest PITR restores to a time (--restore-to), not a pg_dump snapshot; "
            "use pg_dump restore for a snapshot"
        )
    if options.get("in_place"):
        return in_place_steps(options)
    return [
        StepSpec(
            "pgbackrest.restore",
            "Point-in-time restore (pgBackRest, WAL replay) into a new cluster",
            {"restore_to": options.get("restore_to")},
        ),
        StepSpec("pgbackrest.verify", "Verify the restored cluster"),
        StepSpec("pgbackrest.switch", "Switch to the restored cluster"),
    ]


def in_place_steps(options: dict[str, Any]) -> list[StepSpec]:
    """Option ``in_place``: a verified safety backup, then a ``--delta`` restore of the live
    cluster itself (destructive, refused without that backup), then the usual verify."""
    return [
        StepSpec("pgbackrest.safety_backup", "Take a verified safety backup (pgBackRest)"),
        StepSpec(
            "pgbackrest.delta_restore",
            "IN-PLACE point-in-time restore (pgBackRest --delta) of the live cluster",
            {"restore_to": options.get("restore_to")},
        ),
        StepSpec(
            "postgres.verify", "Verify the database (migrations table, row counts, smoke queries)"
        ),
    ]
