"""Registers every provider's step kinds with the core (imported by the composition root)."""

import providers.postgres.steps  # noqa: F401
