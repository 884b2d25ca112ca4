"""Registers every provider's step kinds and planners with the core (imported by the
composition root, ``handlers.runtime.register_provider_steps``)."""

import providers.checks.steps
import providers.checks.watch
import providers.cloudsql.backup
import providers.cloudsql.pitr
import providers.cloudsql.verify
import providers.deploy.steps
import providers.drizzle.steps
import providers.neon.pitr
import providers.neon.steps
import providers.pgbackrest.delta
import providers.pgbackrest.restore_step
import providers.pgbackrest.switch_steps
import providers.postgres.steps
import providers.postgres.triage_step
import providers.postgres.undo_step
import providers.rds.pitr
import providers.rds.verify  # noqa: F401
from bot.methods import register_provider
from providers.cloudsql.plans import CloudSqlPlans
from providers.neon.plans import NeonPlans
from providers.postgres.plans import PostgresPlans
from providers.rds.plans import RdsPlans

register_provider(PostgresPlans("postgres"))
register_provider(NeonPlans())
register_provider(RdsPlans())
register_provider(CloudSqlPlans())
