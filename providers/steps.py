"""Registers every provider's step kinds with the core (imported by the composition root)."""

import providers.drizzle.steps
import providers.postgres.steps
import providers.postgres.triage_step
import providers.postgres.undo_step  # noqa: F401
