"""Registers every provider's step kinds and planners with the core (imported by the
composition root, ``handlers.runtime.register_provider_steps``)."""

import providers.drizzle.steps
import providers.postgres.steps
import providers.postgres.triage_step
import providers.postgres.undo_step  # noqa: F401
from bot.methods import register_provider
from providers.postgres.plans import POSTGRES_COMPATIBLE, PostgresPlans

for _name in POSTGRES_COMPATIBLE:
    register_provider(PostgresPlans(_name))
