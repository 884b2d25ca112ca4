"""What PITR means on an environment with ``[pitr] tool = "pgbackrest"``: restore into a
new cluster, verify it, then switch (its own approved destructive step)."""

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
    return [
        StepSpec(
            "pgbackrest.restore",
            "Point-in-time restore (pgBackRest, WAL replay) into a new cluster",
            {"restore_to": options.get("restore_to")},
        ),
        StepSpec("pgbackrest.verify", "Verify the restored cluster"),
        StepSpec("pgbackrest.switch", "Switch to the restored cluster"),
    ]
