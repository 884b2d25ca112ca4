"""The rollback runbook as one declarative, immutable structure.

Everything the bot says about *what* to do comes from here: the Slack buttons,
the terminal shell, the incident core and the drill all walk ``RUNBOOK``, and
``rollbot runbook`` renders it back to Markdown (``bot.runbook_markdown``), so
the team edits one source. The data is written by hand on purpose: parsing the
Markdown at run time would make a typo in a document change the bot's
behaviour. ``tests/core/test_runbook.py`` checks that nothing of the team's
runbook.md is missing here.

Where the runbook's own commands are out of date or imprecise they are kept
verbatim (people recognise them) and a ``note`` says what to watch for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from bot.errors import NotFoundError, RollbotError

Tier = Literal["development", "staging", "production"]
TIERS: tuple[Tier, ...] = ("development", "staging", "production")


@dataclass(frozen=True)
class ProcedureStep:
    """One numbered step of a method's process."""

    title: str
    commands: tuple[str, ...]  # the lines of the runbook's code block, verbatim
    note: str = ""


@dataclass(frozen=True)
class MethodVariant:
    """A provider-specific way to run a method (PITR on Neon, RDS, Cloud SQL)."""

    id: str  # "neon" | "rds" | "cloudsql"
    title: str  # "For Neon"
    commands: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Method:
    """One way to roll back (or forward), with everything a person needs to choose it."""

    id: str
    title: str
    option: int | None  # numbered option in the runbook; None for tree-only methods
    when_to_use: str
    advantages: tuple[str, ...]
    disadvantages: tuple[str, ...]
    prerequisites: tuple[str, ...]
    steps: tuple[ProcedureStep, ...]
    destructive: bool  # overwrites/replaces database state: approval + safety snapshot first
    data_loss: str  # what data may be lost, one sentence; "" when none
    preferred: bool = False
    variants: tuple[MethodVariant, ...] = ()
    example: str = ""
    example_language: str = ""
    qualifier: str = ""  # the heading's parenthesis: "Preferred", "Last Resort", ...
    script: str = ""  # helper script the runbook points to

    @property
    def heading(self) -> str:
        """The runbook's heading for this method, e.g. "Option 4: pg_dump Restore (Last Resort)"."""
        title = f"{self.title} ({self.qualifier})" if self.qualifier else self.title
        return f"Option {self.option}: {title}" if self.option is not None else title

    def variant(self, variant_id: str) -> MethodVariant:
        for v in self.variants:
            if v.id == variant_id:
                return v
        known = ", ".join(v.id for v in self.variants) or "none"
        raise NotFoundError(f"{self.title} has no {variant_id!r} variant (known: {known})")


@dataclass(frozen=True)
class Choice:
    """An answer to a decision node: leads to another node, or is a leaf naming methods."""

    id: str  # stable: used in button values and stored in incidents
    label: str  # button text, the runbook's wording
    next_node: str | None
    methods: tuple[str, ...]  # leaf: recommended first, then the allowed alternatives
    summary: str = ""  # the runbook's arrow text

    @property
    def is_leaf(self) -> bool:
        return self.next_node is None

    @property
    def tree_line(self) -> str:
        """The line of the runbook's decision tree: "Data corruption? → PITR restore (...)"."""
        return f"{self.label} → {self.summary}" if self.summary else f"{self.label} →"


@dataclass(frozen=True)
class DecisionNode:
    id: str
    question: str
    choices: tuple[Choice, ...]

    def choice(self, choice_id: str) -> Choice:
        for c in self.choices:
            if c.id == choice_id:
                return c
        valid = ", ".join(c.id for c in self.choices)
        raise RollbotError(
            f"{choice_id!r} is not an answer to {self.question!r}; choose one of: {valid}"
        )


@dataclass(frozen=True)
class ChecklistItem:
    id: str  # stable: ticks are stored against it
    text: str


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    solution: str
    commands: tuple[str, ...]
    methods: tuple[str, ...]  # the runbook methods this scenario leads to ("" = none)


@dataclass(frozen=True)
class Contact:
    when: Literal["business_hours", "after_hours"]
    name: str
    channel: str
    production_only: bool = False
    role: str = ""  # the runbook's label when it is a role, not a name ("Escalation")
    via: str = ""  # the medium when the channel alone does not say it ("Slack")

    @property
    def line(self) -> str:
        """The runbook's line, e.g. "DevOps Team: #devops-team (Slack)"."""
        text = f"{self.role}: {self.name}" if self.role else f"{self.name}: {self.channel}"
        if self.via:
            text += f" ({self.via})"
        if self.production_only:
            text += " (for production only)"
        return text


@dataclass(frozen=True)
class Practice:
    id: str
    title: str
    detail: str
    example: str = ""
    example_language: str = ""


@dataclass(frozen=True)
class Reference:
    title: str
    url: str


@dataclass(frozen=True)
class Runbook:
    title: str
    important: str
    root: str
    nodes: Mapping[str, DecisionNode]
    methods: Mapping[str, Method]
    before_checklist: tuple[ChecklistItem, ...]
    after_checklist: tuple[ChecklistItem, ...]
    scenarios: tuple[Scenario, ...]
    contacts: tuple[Contact, ...]
    prevention: tuple[Practice, ...]
    drill: tuple[str, ...]
    audit_log_format: str  # "{timestamp} - Migration {event}: {name}"
    tree_title: str = ""  # the first line of the runbook's decision tree
    audit_log_commands: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()
    last_updated: str = ""
    maintained_by: str = ""
    review_schedule: str = ""

    def __post_init__(self) -> None:
        problems = _consistency_problems(self)
        if problems:
            raise ValueError("runbook data is inconsistent: " + "; ".join(problems))

    def node(self, node_id: str) -> DecisionNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NotFoundError(
                f"no decision node {node_id!r} in the runbook (known: {', '.join(self.nodes)})"
            ) from None

    def method(self, method_id: str) -> Method:
        try:
            return self.methods[method_id]
        except KeyError:
            raise NotFoundError(
                f"no rollback method {method_id!r} in the runbook "
                f"(known: {', '.join(self.methods)})"
            ) from None

    def checklist_item(self, item_id: str) -> ChecklistItem:
        for item in (*self.before_checklist, *self.after_checklist):
            if item.id == item_id:
                return item
        raise NotFoundError(f"no checklist item {item_id!r} in the runbook")

    def walk(self, answers: Sequence[str]) -> DecisionNode | Choice:
        """Follow choice ids from the root: the next node to ask, or the leaf Choice reached."""
        current: DecisionNode | Choice = self.node(self.root)
        path: list[str] = []
        for answer in answers:
            if isinstance(current, Choice):
                raise RollbotError(
                    f"the decision tree already ended at {' > '.join(path)}; "
                    f"{answer!r} answers nothing"
                )
            choice = current.choice(answer)
            path.append(choice.id)
            current = self.node(choice.next_node) if choice.next_node else choice
        return current

    def leaves(self) -> list[tuple[tuple[str, ...], Choice]]:
        """Every path of choice ids from the root to a leaf, in the runbook's order."""
        found: list[tuple[tuple[str, ...], Choice]] = []

        def visit(node: DecisionNode, path: tuple[str, ...]) -> None:
            for c in node.choices:
                if c.next_node is None:
                    found.append(((*path, c.id), c))
                else:
                    visit(self.nodes[c.next_node], (*path, c.id))

        visit(self.node(self.root), ())
        return found


def _consistency_problems(rb: Runbook) -> list[str]:
    """Mistakes in the hand-written data that would only show up mid-incident otherwise."""
    problems: list[str] = []
    if rb.root not in rb.nodes:
        problems.append(f"root {rb.root!r} is not a node")
    for key, node in rb.nodes.items():
        if key != node.id:
            problems.append(f"node {node.id!r} is stored under {key!r}")
        ids = [c.id for c in node.choices]
        if len(set(ids)) != len(ids):
            problems.append(f"node {node.id!r} repeats a choice id")
        for c in node.choices:
            if c.next_node is not None:
                if c.next_node not in rb.nodes:
                    problems.append(f"choice {c.id!r} leads to unknown node {c.next_node!r}")
                if c.methods:
                    problems.append(f"choice {c.id!r} is not a leaf but names methods")
            elif not c.methods:
                problems.append(f"leaf {c.id!r} names no method")
            problems += [
                f"leaf {c.id!r} names unknown method {m!r}"
                for m in c.methods
                if m not in rb.methods
            ]
    for key, method in rb.methods.items():
        if key != method.id:
            problems.append(f"method {method.id!r} is stored under {key!r}")
        if method.destructive and not method.data_loss:
            problems.append(f"destructive method {method.id!r} does not say what may be lost")
    checklist_ids = [i.id for i in (*rb.before_checklist, *rb.after_checklist)]
    if len(set(checklist_ids)) != len(checklist_ids):
        problems.append("checklist item ids repeat")
    for s in rb.scenarios:
        problems += [
            f"scenario {s.id!r} names unknown method {m!r}"
            for m in s.methods
            if m not in rb.methods
        ]
    return problems


_VERIFY_MIGRATIONS = (
    'psql $DATABASE_URL -c "SELECT * FROM _drizzle_migrations ORDER BY id DESC LIMIT 5"'
)
_VERIFY_NOTE = (
    "Drizzle's tracking table is drizzle.__drizzle_migrations by default (schema and table are "
    "configurable); rollbot's verify step reads the configured one and compares it with the journal."
)

_FORWARD_FIX_EXAMPLE = """\
// Before (problematic)
export const users = pgTable('users', {
  id: serial('id').primaryKey(),
  email: varchar('email', { length: 255 }).notNull(),
  newColumn: varchar('new_column', { length: 100 }), // Problem!
});

// After (forward-fix)
export const users = pgTable('users', {
  id: serial('id').primaryKey(),
  email: varchar('email', { length: 255 }).notNull(),
  // Column removed
});"""

FORWARD_FIX = Method(
    id="forward_fix",
    title="Forward-Fix Migration",
    option=1,
    qualifier="Preferred",
    preferred=True,
    when_to_use="Schema changes need to be reversed, no data corruption",
    advantages=(
        "No risk of data loss",
        "Preserves audit trail",
        "Can be tested in staging first",
        "Works with all environments",
    ),
    disadvantages=(),
    prerequisites=(),
    steps=(
        ProcedureStep(
            "Identify the problematic change",
            ("# View recent migrations", "ls -lt migrations/*.sql | head -5"),
            note="rollbot migrations status lists applied and pending migrations from the journal.",
        ),
        ProcedureStep(
            "Revert the schema change",
            (
                "# Edit src/server/db/models/Schema.ts",
                "# Remove or modify the problematic change",
                "vim src/server/db/models/Schema.ts",
            ),
        ),
        ProcedureStep("Generate reverse migration", ("npm run db:generate",)),
        ProcedureStep("Test locally", ("npm run db:migrate", "npm run test:integration")),
        ProcedureStep(
            "Commit and deploy",
            (
                "git add src/server/db/models/ migrations/",
                'git commit -m "revert: rollback migration XXXX - description"',
                "git push",
            ),
        ),
    ),
    destructive=False,
    data_loss="",
    example=_FORWARD_FIX_EXAMPLE,
    example_language="typescript",
)

NEON_BRANCH = Method(
    id="neon_branch",
    title="Neon Branch Rollback",
    option=2,
    qualifier="Staging/Production",
    when_to_use="Quick rollback needed, using Neon managed Postgres",
    advantages=(
        "Fast (seconds to switch)",
        "Complete database state rollback",
        "Can preserve problematic state for debugging",
    ),
    disadvantages=(),
    prerequisites=("Neon API key set in environment", "Automatic branching enabled"),
    steps=(
        ProcedureStep(
            "List available branches", ("neon branches list --project-id $NEON_PROJECT_ID",)
        ),
        ProcedureStep(
            "Identify the branch before migration",
            (
                "# Neon creates automatic branches before migrations",
                "# Look for branch with timestamp before the problematic migration",
            ),
        ),
        ProcedureStep(
            "Promote the previous branch",
            ("neon branches set-primary $PREVIOUS_BRANCH_ID --project-id $NEON_PROJECT_ID",),
            note=(
                "Current neonctl and the Neon API v2 call this set-default (set_as_default); "
                "set-primary is gone from the API."
            ),
        ),
        ProcedureStep(
            "Update application configuration",
            ("# Update DATABASE_URL in deployment environment", "# Redeploy application"),
        ),
        ProcedureStep("Verify", ("# Check database state", _VERIFY_MIGRATIONS), note=_VERIFY_NOTE),
    ),
    destructive=True,
    data_loss=(
        "Writes made after the earlier branch was taken are no longer served by the application "
        "(they stay on the old branch, kept for debugging)."
    ),
    script="scripts/db/rollback.sh",
)

PITR = Method(
    id="pitr",
    title="Point-in-Time Restore (PITR)",
    option=3,
    when_to_use="Data corruption occurred, need to restore to before the migration",
    advantages=(
        "Can restore to any point in time (within retention window)",
        "Preserves data integrity",
    ),
    disadvantages=(
        "Slower than branch rollback",
        "Requires PITR enabled on database",
        "May lose recent data",
    ),
    prerequisites=(
        "PITR enabled on the database, with the restore point inside its retention window",
    ),
    # The runbook gives PITR per provider only; these steps are its common shape, worded
    # after the "Data corruption after migration" scenario.
    steps=(
        ProcedureStep(
            "Choose the restore point",
            ("# Restore to timestamp before migration",),
            note="A UTC timestamp just before the migration started (see migrations/audit.log).",
        ),
        ProcedureStep(
            "Restore to that point",
            ("# Use the commands for your provider below",),
            note="Neon and RDS restore into a new branch/instance; the old one stays for debugging.",
        ),
        ProcedureStep("Update application configuration", ("# Update DATABASE_URL and redeploy",)),
        ProcedureStep("Verify", (_VERIFY_MIGRATIONS,), note=_VERIFY_NOTE),
        ProcedureStep("Apply fixed migration", ("# Apply fixed migration",)),
    ),
    destructive=True,
    data_loss="Everything written after the restore point is missing from the restored database.",
    variants=(
        MethodVariant(
            "neon",
            "For Neon",
            (
                "# Create a new branch from a specific point in time",
                "neon branches create \\",
                "  --name restored-$(date +%Y%m%d-%H%M%S) \\",
                "  --parent main \\",
                '  --timestamp "2025-01-15T10:30:00Z" \\',
                "  --project-id $NEON_PROJECT_ID",
                "",
                "# Get the new branch connection string",
                "neon connection-string --branch restored-XXXX --project-id $NEON_PROJECT_ID",
                "",
                "# Update DATABASE_URL and redeploy",
            ),
        ),
        MethodVariant(
            "rds",
            "For AWS RDS",
            (
                "aws rds restore-db-instance-to-point-in-time \\",
                "  --source-db-instance-identifier prod-db \\",
                "  --target-db-instance-identifier prod-db-restored \\",
                "  --restore-time 2025-01-15T10:30:00Z",
            ),
            note=(
                "Creates a new instance. Aurora clusters use restore-db-cluster-to-point-in-time "
                "with --restore-to-time instead."
            ),
        ),
        MethodVariant(
            "cloudsql",
            "For Google Cloud SQL",
            (
                "gcloud sql instances restore-backup prod-db \\",
                "  --backup-id 1234567890 \\",
                "  --backup-project myproject",
            ),
            note=(
                "restore-backup overwrites the instance in place from a backup; a true "
                "point-in-time restore is `gcloud sql instances clone prod-db prod-db-restored "
                "--point-in-time TIMESTAMP` into a new instance."
            ),
        ),
    ),
)

PG_DUMP_RESTORE = Method(
    id="pg_dump_restore",
    title="pg_dump Restore",
    option=4,
    qualifier="Last Resort",
    when_to_use="No PITR available, have recent backup",
    advantages=(),
    disadvantages=(),
    prerequisites=(
        "Recent backup created via `npm run db:snapshot`",
        "Backup file in `backups/` directory",
    ),
    steps=(
        ProcedureStep("List available backups", ("ls -lh backups/",)),
        ProcedureStep(
            "Restore from backup",
            (
                "# WARNING: This will overwrite the database",
                "gunzip -c backups/snapshot-YYYYMMDD-HHMMSS.sql.gz | \\",
                "  psql $DATABASE_URL",
            ),
            note="rollbot checks the snapshot's checksum and takes a safety snapshot first.",
        ),
        ProcedureStep("Verify", (_VERIFY_MIGRATIONS,), note=_VERIFY_NOTE),
    ),
    destructive=True,
    data_loss="The database is overwritten: everything written after the backup was taken is lost.",
)

DEV_RESET = Method(
    id="dev_reset",
    title="Development Reset",
    option=None,
    when_to_use="In Development: drop database, re-run from scratch",
    advantages=("Simplest and fastest way back to a known state", "Exercises every migration"),
    disadvantages=("Loses all data in the development database",),
    prerequisites=("Only for development databases", "Seed data can be reloaded"),
    steps=(
        ProcedureStep(
            "Drop the database",
            ('psql "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)"',),
            note="rollbot refuses this method for staging and production environments.",
        ),
        ProcedureStep(
            "Re-create the database", ('psql "$ADMIN_DATABASE_URL" -c "CREATE DATABASE $DB_NAME"',)
        ),
        ProcedureStep("Re-run migrations from scratch", ("npm run db:migrate",)),
        ProcedureStep("Verify", (_VERIFY_MIGRATIONS,), note=_VERIFY_NOTE),
    ),
    destructive=True,
    data_loss="The whole development database is dropped: all of its data is lost.",
)

APP_ROLLBACK = Method(
    id="app_rollback",
    title="Application Rollback",
    option=None,
    when_to_use="In Production, app completely broken: rollback app deployment, keep DB",
    advantages=(
        "Database untouched: no risk of data loss",
        "Fast: restores the last working release",
    ),
    disadvantages=(
        "The previous release must work with the current schema",
        "The migration stays applied and still needs a forward-fix",
    ),
    prerequisites=("The team's app rollback command is configured for the environment",),
    steps=(
        ProcedureStep(
            "Roll back the app deployment",
            ("# Run the team's app rollback command (commands.app_rollback in rollbot.toml)",),
        ),
        ProcedureStep(
            "Keep the database",
            ("# Do not restore or reset the database",),
            note="The schema stays as migrated; plan a forward-fix next.",
        ),
        ProcedureStep("Verify", (_VERIFY_MIGRATIONS,), note=_VERIFY_NOTE),
    ),
    destructive=False,
    data_loss="",
)

STUCK_MIGRATION = Method(
    id="stuck_migration",
    title="Stuck-migration triage",
    option=None,
    when_to_use=(
        "Migration hangs/times out: a lock held by another session blocks it; find the root "
        "blocker and end it"
    ),
    advantages=(
        "The migration proceeds without restoring anything",
        "Only the blocking session's open transaction is affected",
    ),
    disadvantages=(
        "The blocking session's uncommitted work is rolled back",
        "The blocker's application sees a dropped connection",
    ),
    prerequisites=("The blocker is safe to end (not another migration or a critical batch job)",),
    steps=(
        ProcedureStep(
            "Check for long-running queries",
            (
                'psql $DATABASE_URL -c "SELECT pid, now() - pg_stat_activity.query_start AS '
                "duration, query FROM pg_stat_activity WHERE state = 'active';\"",
            ),
            note=(
                "The usual blocker is a session idle in transaction, which this query hides; "
                "rollbot lists the blocking tree from pg_blocking_pids instead."
            ),
        ),
        ProcedureStep(
            "Kill blocking query if safe",
            ('psql $DATABASE_URL -c "SELECT pg_terminate_backend(PID);"',),
            note=(
                "rollbot pins the root blocker's PID and backend start time when the plan is "
                "made, so a reused PID is refused."
            ),
        ),
    ),
    destructive=True,
    data_loss=(
        "The blocking transaction's uncommitted work is rolled back when its session is ended."
    ),
)

_DECISION_NODES = (
    DecisionNode(
        id="environment",
        question="Migration failed or needs rollback: in which environment?",
        choices=(
            Choice(
                "development",
                "In Development",
                None,
                ("dev_reset",),
                "Drop database, re-run from scratch",
            ),
            Choice(
                "staging",
                "In Staging",
                None,
                ("forward_fix", "neon_branch"),
                "Forward-fix OR Neon branch rollback",
            ),
            Choice("production", "In Production", "production_problem", ()),
        ),
    ),
    DecisionNode(
        id="production_problem",
        question="In Production: what is wrong?",
        choices=(
            Choice(
                "data_corruption",
                "Data corruption?",
                None,
                # PITR first; Neon branch and pg_dump (no PITR available / last resort) allowed.
                ("pitr", "neon_branch", "pg_dump_restore"),
                "PITR restore (Point-in-Time Recovery)",
            ),
            Choice(
                "schema_only", "Schema issue only?", None, ("forward_fix",), "Forward-fix migration"
            ),
            Choice(
                "app_broken",
                "App completely broken?",
                None,
                ("app_rollback",),
                "Rollback app deployment, keep DB",
            ),
        ),
    ),
)

RUNBOOK = Runbook(
    title="Database Rollback Procedures",
    important=(
        "Always prefer forward-fix migrations over rollbacks when possible. Rollbacks can lead "
        "to data loss and should only be used in emergencies."
    ),
    tree_title="Migration Failed or Needs Rollback?",
    root="environment",
    nodes=MappingProxyType({n.id: n for n in _DECISION_NODES}),
    methods=MappingProxyType(
        {
            m.id: m
            for m in (
                FORWARD_FIX,
                NEON_BRANCH,
                PITR,
                PG_DUMP_RESTORE,
                DEV_RESET,
                APP_ROLLBACK,
                STUCK_MIGRATION,
            )
        }
    ),
    before_checklist=(
        ChecklistItem("before.identify_migration", "Identify the problematic migration"),
        ChecklistItem(
            "before.choose_method", "Determine the rollback method (forward-fix preferred)"
        ),
        ChecklistItem("before.incident_ticket", "Create incident ticket/report"),
        ChecklistItem("before.notify_team", "Notify team in #incidents Slack channel"),
        ChecklistItem("before.snapshot", "Take snapshot/backup if not automated"),
        ChecklistItem("before.root_cause", "Document the root cause"),
        ChecklistItem("before.plan_verification", "Plan verification steps"),
        ChecklistItem("before.stakeholders", "Communicate to stakeholders"),
    ),
    after_checklist=(
        ChecklistItem("after.verify_database", "Verify database state"),
        ChecklistItem("after.smoke_tests", "Run smoke tests"),
        ChecklistItem("after.monitor_errors", "Monitor error rates"),
        ChecklistItem("after.document", "Document what happened"),
        ChecklistItem("after.post_mortem", "Schedule post-mortem"),
        ChecklistItem("after.update_runbooks", "Update runbooks if needed"),
    ),
    contacts=(
        Contact("business_hours", "DevOps Team", "#devops-team", via="Slack"),
        Contact("business_hours", "Database Admin", "db-admin@example.com"),
        Contact("after_hours", "On-Call Engineer", "PagerDuty escalation"),
        Contact(
            "after_hours", "CTO", "PagerDuty escalation", production_only=True, role="Escalation"
        ),
    ),
    prevention=(
        Practice(
            "staging_first",
            "Test migrations in staging first",
            "Always deploy to staging before production; wait for staging verification, then "
            "manually approve the production deploy.",
            "# Always deploy to staging before production\n"
            "git push origin main  # Triggers staging deploy\n"
            "# Wait for staging verification\n"
            "# Then manually approve production deploy",
            "bash",
        ),
        Practice(
            "feature_flags",
            "Use feature flags for risky changes",
            "Deploy code with the feature flag off, run the migration, then enable the flag gradually.",
            "// Deploy code with feature flag OFF\n"
            "// Run migration\n"
            "// Enable feature flag gradually",
            "typescript",
        ),
        Practice(
            "additive_first",
            "Additive changes first",
            "Add new columns as nullable, backfill and make them required later, and remove old "
            "columns last, one step per deploy.",
            "// Week 1: Add new column (nullable)\n"
            "export const users = pgTable('users', {\n"
            "  oldColumn: varchar('old_column'),\n"
            "  newColumn: varchar('new_column'), // nullable!\n"
            "});\n"
            "\n"
            "// Week 2: Backfill data, make required\n"
            "// Week 3: Remove old column",
            "typescript",
        ),
        Practice(
            "pre_deploy_snapshots",
            "Automated pre-deploy snapshots",
            "The deployment workflow takes a database snapshot before every migration.",
            "# In deployment workflow\n- name: Create snapshot\n  run: npm run db:snapshot",
            "yaml",
        ),
    ),
    scenarios=(
        Scenario(
            "added_column_breaks_old_code",
            "Added column breaks old application code",
            "Forward-fix by making column nullable",
            (
                "# Edit schema, make column nullable",
                "npm run db:generate",
                'git commit -m "fix: make new column nullable for backward compatibility"',
                "git push",
            ),
            ("forward_fix",),
        ),
        Scenario(
            "dropped_column_still_needed",
            "Dropped column still needed by app",
            "Re-add column, deploy fix",
            (
                "# Re-add column to schema",
                "npm run db:generate",
                "npm run db:migrate",
                "# Verify locally",
                'git commit -m "fix: re-add accidentally dropped column"',
                "git push",
            ),
            ("forward_fix",),
        ),
        Scenario(
            "migration_hangs",
            "Migration hangs/times out",
            "Cancel migration, investigate locking",
            (
                "# Check for long-running queries",
                'psql $DATABASE_URL -c "SELECT pid, now() - pg_stat_activity.query_start AS '
                "duration, query FROM pg_stat_activity WHERE state = 'active';\"",
                "",
                "# Kill blocking query if safe",
                'psql $DATABASE_URL -c "SELECT pg_terminate_backend(PID);"',
            ),
            ("stuck_migration",),
        ),
        Scenario(
            "data_corruption_after_migration",
            "Data corruption after migration",
            "PITR restore to before migration",
            (
                "# Use Option 3 (PITR) above",
                "# Restore to timestamp before migration",
                "# Apply fixed migration",
            ),
            ("pitr",),
        ),
    ),
    drill=(
        "Create test environment",
        "Apply problematic migration intentionally",
        "Practice each rollback method",
        "Time the procedures",
        "Update this document with learnings",
    ),
    audit_log_format="{timestamp} - Migration {event}: {name}",
    audit_log_commands=(
        "# Automatic with telemetry wrapper",
        "ENVIRONMENT=production ./scripts/db/migrate-with-telemetry.sh",
        "",
        "# Manual logging",
        'echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) - Migration started: $MIGRATION_NAME" >> '
        "migrations/audit.log",
    ),
    references=(
        Reference("Drizzle ORM Documentation", "https://orm.drizzle.team/"),
        Reference("Neon Branching Guide", "https://neon.tech/docs/guides/branching"),
        Reference("DATABASE_SCHEMA_MANAGEMENT_2025.md", "../../DATABASE_SCHEMA_MANAGEMENT_2025.md"),
        Reference(
            "SCHEMA_DEPLOYMENT_SIMPLIFIED_PLAN.md", "../../SCHEMA_DEPLOYMENT_SIMPLIFIED_PLAN.md"
        ),
    ),
    last_updated="November 15, 2025",
    maintained_by="DevOps Team",
    review_schedule="Quarterly",
)
