"""``rollbot drill --env NAME`` on a Neon environment: the runbook's drill for Neon's two
methods, on a throwaway child branch of the environment's branch.

The environment's own branch is only ever the parent of the throwaway: nothing is
written to it, nothing restores or deletes it, and the project's default branch is never
switched (the branch rollback runs with ``make_default = false``). Everything else goes
through the incident core exactly as an on-call person's incident would (plans,
approvals by ``drill-approver``, the executor), against a copy of the environment whose
Neon section names the throwaway branch. Every branch the drill makes, and every branch
below them, is deleted at the end, also when a step fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import ApprovalsConfig, CommandsConfig, DeployConfig, EnvironmentConfig, Settings
from bot.errors import RollbotError
from bot.redact import redact
from bot.runbook import RUNBOOK
from handlers.drill import neon_support as support
from handlers.drill.neon_support import BranchLedger, DrillFolder
from handlers.drill.runner import APPROVER, REQUESTER, Drill, DrillOptions, DrillResult, timed
from handlers.drill.timing import MethodOutcome, StepTiming
from handlers.runtime import Runtime, start_runtime
from providers.drizzle.apply import apply_migrations
from providers.drizzle.journal import read_journal
from providers.neon.access import client_for, environment_branch, neon_config, stamp
from providers.neon.client import Branch, NeonClient
from providers.neon.config import NeonConfig
from providers.neon.premigrate import create_pre_migration_branch

Echo = Callable[[str], None]
URL_ENV = "ROLLBOT_DRILL_NEON_URL"
THROWAWAY_PREFIX = "rollbot-drill-"
# Where each method is allowed by the runbook's decision tree, and the answers that get
# there (the environment node is answered by the environment's tier).
ANSWERS = {"staging": [], "production": ["data_corruption"]}


def note_write(branch_id: str) -> None:
    """Called after each drill write to a branch whose history a restore will read.

    Neon records every write in the branch's history, so there is nothing to do; it is the
    one place a stand-in that cannot see writes (the test suite's local Neon API) is told.
    """


@dataclass
class NeonDrillResult(DrillResult):
    """A drill result whose clean-up counts: a branch left behind fails the drill."""

    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return super().ok and not self.leftovers


def tier_for(method_id: str, tier: str) -> str:
    """The environment's tier if the runbook allows the method there, else production."""
    if tier in ANSWERS:
        leaf = RUNBOOK.walk([tier, *ANSWERS[tier]])
        if method_id in getattr(leaf, "methods", ()):
            return tier
    return "production"


class NeonDrill:
    def __init__(self, env: EnvironmentConfig, output: Path, echo: Echo) -> None:
        self.env = env
        self.cfg: NeonConfig = neon_config(env)
        self.output = output
        self.echo = echo
        self.result = NeonDrillResult(started_at=datetime.now(UTC), output=output)
        self.client: NeonClient | None = None
        self.ledger: BranchLedger | None = None
        self.throwaway: Branch | None = None
        self.folder: DrillFolder | None = None
        self.envs: dict[str, EnvironmentConfig] = {}  # tier -> the drill environment
        self.runtime: Runtime | None = None
        self.core = Drill(DrillOptions(output=output), echo)  # runs the incidents
        self.core.result = self.result
        self._tmp = Path(tempfile.mkdtemp(prefix="rollbot-neon-drill-"))

    # -------------------------------------------------------------- setup
    def url(self, branch_id: str) -> str:
        assert self.client is not None
        return self.client.connection_uri(
            branch_id, database_name=self.cfg.database_name, role_name=self.cfg.role_name
        )

    def start(self) -> None:
        env, setup = self.env, self.result.setup
        source = env.migrations_dir
        with timed(setup, "copy the migrations folder and add the drill migration"):
            self.folder = support.make_drill_folder(
                source, env.migrations_table, self._tmp / "migrations"
            )
        self.result.problematic = self.folder.drill.tag
        self.result.migrations_folder = (
            str(source) if source else "none configured (a folder of the drill's own)"
        )
        self.client = client_for(env)
        parent = environment_branch(self.client, env)
        self.ledger = BranchLedger(self.client, frozenset({parent.id}), self.cfg.poll_seconds)
        name = f"{THROWAWAY_PREFIX}{stamp(datetime.now(UTC))}"
        with timed(setup, f"create the throwaway branch {name} of {parent.name}"):
            # By name until the answer gives its id: a lost answer must not leave it behind.
            self.ledger.add_name(name)
            branch, operations = self.client.create_branch(parent.id, name)
            self.ledger.add(branch)  # recorded before the wait: clean-up must know it
            self.ledger.names.discard(name)
            # The restore's preserved branch is named after it (and recorded by name too).
            self.ledger.prefixes.add(f"{name}-before-restore-")
            self.client.wait(operations, poll_seconds=self.cfg.poll_seconds)
        self.throwaway = branch
        url = self.url(branch.id)
        os.environ[URL_ENV] = url
        self.result.server_version = (
            f"{support.server_version(url)} on Neon (project {self.cfg.project_id})"
        )
        self.result.server_where = f"throwaway branch {name}"
        self.result.notes += [
            f"Neon drill of {env.name} ({env.tier}) on the throwaway branch {name} "
            f"({branch.id}), a child of {parent.name} ({parent.id}), which the drill never "
            "writes to, restores, switches or deletes",
            "the branch rollback runs with make_default = false: the project's default "
            "branch belongs to the real environment, so set_as_default is never sent",
        ]
        if self.folder.baseline is not None:
            with timed(setup, f"apply {self.folder.baseline.tag} (the head before the drill's)"):
                apply_migrations(url, self.folder.only(self.folder.baseline), self.folder.table)
        self.echo(f"throwaway branch {name} ({branch.id}) of {parent.name} ready")

    def drill_env(self, tier: str) -> EnvironmentConfig:
        """A copy of the environment on the throwaway branch, with the drill's folder; no
        team commands (a repoint command would move the real app)."""
        if tier not in self.envs:
            assert self.throwaway is not None and self.folder is not None
            section = self.cfg.model_copy(
                update={"branch_id": self.throwaway.id, "repoint_command": None}
            )
            name = f"{self.env.name}-drill" + ("" if tier == self.env.tier else f"-as-{tier}")
            self.envs[tier] = self.env.model_copy(
                update={
                    "name": name,
                    "tier": tier,
                    "database_url_env": URL_ENV,
                    "section": section,
                    "migrations_dir": self.folder.folder,
                    "migrations_table": self.folder.table,
                    "backups": str(self._tmp / "backups"),
                    "commands": CommandsConfig(),
                    "deploy": DeployConfig(),
                }
            )
        return self.envs[tier]

    def start_core(self) -> None:
        for method_id in ("neon_branch", "pitr"):
            self.drill_env(tier_for(method_id, self.env.tier))
        state = self.output / "drill-state.db"
        state.unlink(missing_ok=True)
        settings = Settings().model_copy(
            update={
                "database_url": f"sqlite:///{state}",
                "audit_log": self.output / "audit.log",
                "approvals": ApprovalsConfig(users=(REQUESTER, APPROVER)),
                "environments": {e.name: e for e in self.envs.values()},
                "source": f"rollbot drill --env {self.env.name}",
            }
        )
        with timed(self.result.setup, "start the incident core"):
            self.runtime = start_runtime(settings)
        self.core.runtime = self.runtime

    def outcome(self, method_id: str, title: str) -> MethodOutcome:
        env = self.drill_env(tier_for(method_id, self.env.tier))
        return MethodOutcome(
            key=method_id,
            title=title,
            method_id=method_id,
            environment=env.name,
            tier=env.tier,
            expected_loss=RUNBOOK.method(method_id).data_loss or "none",
        )

    def incident(self, outcome: MethodOutcome, options: dict[str, Any]) -> Any:
        answers = ANSWERS[outcome.tier]
        try:
            return self.core.incident(outcome, answers, options)
        finally:
            self._record_caused(outcome)

    def _record_caused(self, outcome: MethodOutcome) -> None:
        """The branch a restore preserves the old state under, also when the run broke."""
        if not outcome.incident_ref or self.runtime is None or self.ledger is None:
            return
        try:
            steps = self.runtime.bot.get(outcome.incident_ref).steps
        except Exception:  # the name prefix still finds it; the first error must show
            return
        for step in steps:
            if step.kind == "neon.pitr" and step.params.get("preserve_as"):
                self.ledger.add_name(str(step.params["preserve_as"]))

    # -------------------------------------------------------------- the methods
    def branch_rollback(self, outcome: MethodOutcome) -> None:
        assert self.throwaway and self.folder and self.ledger
        env, url = self.drill_env(outcome.tier), self.url(self.throwaway.id)
        before = support.head_tag(url, self.folder.table, read_journal(self.folder.folder))
        with timed(outcome.setup, "pre-migration branch of the throwaway (as rollbot migrate)"):
            pre, _ = create_pre_migration_branch(env, "rollbot_drill")
            self.ledger.add(pre)
        with timed(outcome.setup, f"apply the drill migration {self.folder.drill.tag}"):
            applied = apply_migrations(url, self.folder.only(self.folder.drill), self.folder.table)
            note_write(self.throwaway.id)
        if [e.tag for e in applied] != [self.folder.drill.tag]:
            raise RollbotError(
                f"the drill migration {self.folder.drill.tag} was not applied: the branch "
                "has a migration newer than it"
            )
        done = self.incident(outcome, {"snapshot": pre.name, "make_default": False})
        steps = {s.kind: s for s in done.steps}
        rollback, verify = steps.get("neon.branch_rollback"), steps.get("neon.verify")
        if rollback is not None and rollback.params.get("branch_id") != pre.id:
            outcome.problems.append(
                f"the plan pinned {rollback.params.get('branch_name')}, not the pre-migration "
                f"branch {pre.name}"
            )
        if rollback is not None and rollback.params.get("make_default") is not False:
            outcome.problems.append("the plan would switch the project's default branch")
        if outcome.incident_state != "verifying" or verify is None:
            return
        head = (verify.result or {}).get("head")
        if head == before:
            outcome.checks.append(f"the verify found the pre-migration head {before} on {pre.name}")
        else:
            outcome.problems.append(f"the verify found head {head} on {pre.name}, not {before}")
        if support.probe_rows(self.url(pre.id)) is None:
            outcome.checks.append(f"{support.PROBE} (the drill migration's table) is absent there")
        else:
            outcome.problems.append(f"{support.PROBE} exists on {pre.name}")
        if support.probe_rows(url) is not None:
            outcome.checks.append(f"{self.throwaway.name} is kept unchanged, migration and all")
        else:
            outcome.problems.append(f"{support.PROBE} is gone from {self.throwaway.name}")
        outcome.note = f"moved the drill environment to {pre.name}, taken before the migration"

    def pitr(self, outcome: MethodOutcome) -> None:
        assert self.throwaway and self.folder and self.client
        url = self.url(self.throwaway.id)
        if outcome.tier != self.env.tier:
            self.result.notes.append(
                f"the runbook allows PITR only in production: its incident runs in "
                f"{outcome.environment}, on the same throwaway branch, with tier {outcome.tier}"
            )
        if support.probe_rows(url) is None:  # the branch rollback did not get that far
            with timed(outcome.setup, f"apply the drill migration {self.folder.drill.tag}"):
                apply_migrations(url, self.folder.only(self.folder.drill), self.folder.table)
                note_write(self.throwaway.id)
        with timed(outcome.setup, "note the restore point (the database's clock)"):
            moment = support.restore_point(url)
        with timed(outcome.setup, f"write {support.PROBE_ROWS} probe rows after it"):
            support.write_later_rows(url)
            note_write(self.throwaway.id)
        done = self.incident(outcome, {"restore_to": moment.isoformat()})
        steps = {s.kind: s for s in done.steps}
        restore, verify = steps.get("neon.pitr"), steps.get("neon.verify")
        if outcome.incident_state != "verifying" or restore is None or verify is None:
            return
        head = (verify.result or {}).get("head")
        if head == self.folder.drill.tag:
            outcome.checks.append(f"the verify found the head at the restore point, {head}")
        else:
            outcome.problems.append(f"the verify found head {head}, not {self.folder.drill.tag}")
        rows = support.probe_rows(url) or {}
        later, kept = rows.get(support.LATER_NOTE, 0), rows.get(support.MIGRATION_NOTE, 0)
        if later == 0 and kept == support.PROBE_ROWS:
            outcome.checks.append(
                f"the {support.PROBE_ROWS} rows written after the restore point are gone, the "
                f"{kept} from before it are there (documented loss)"
            )
        else:
            outcome.problems.append(
                f"after the restore {self.throwaway.name} has {later} rows written after the "
                f"restore point and {kept} from before it"
            )
        preserved = self.client.find_branch(str(restore.params["preserve_as"]))
        old = support.probe_rows(self.url(preserved.id)) or {}
        if old.get(support.LATER_NOTE) == support.PROBE_ROWS:
            outcome.checks.append(f"the state before the restore is kept as {preserved.name}")
        else:
            outcome.problems.append(f"{preserved.name} does not hold the state before the restore")
        outcome.note = f"restored {self.throwaway.name} to {moment:%Y-%m-%d %H:%M:%S.%f} UTC"

    # -------------------------------------------------------------- the end
    def finish(self) -> None:
        """Delete every branch the drill made; never raises, so nothing hides an error."""
        try:
            if self.ledger is not None:
                self.echo("deleting the drill's branches ...")
                started = time.monotonic()
                deleted, problems = self.ledger.delete_all(self.echo)
                self.result.setup.append(
                    StepTiming(
                        "delete every branch the drill made",
                        "drill.cleanup",
                        time.monotonic() - started,
                        not problems,
                        f"{len(problems)} branch(es) left behind" if problems else "",
                    )
                )
                self.result.leftovers += problems
                self.result.notes.append(
                    f"clean-up deleted {len(deleted)} branch(es): {', '.join(deleted) or 'none'}"
                )
                self.result.notes += [f"**clean-up FAILED**: {p}" for p in problems]
                for problem in problems:
                    self.echo(f"  problem: {problem}")
        finally:
            os.environ.pop(URL_ENV, None)
            if self.runtime is not None:
                self.runtime.executor.shutdown()
                self.runtime.bot.store.dispose()
            if self.client is not None:
                self.client.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


PRACTICE = (
    ("neon_branch", "Neon branch rollback (throwaway branch)", NeonDrill.branch_rollback),
    ("pitr", "Neon point-in-time restore (throwaway branch)", NeonDrill.pitr),
)


def run_neon_drill(
    settings: Settings, env_name: str, output: Path, echo: Echo = print
) -> NeonDrillResult:
    """Both Neon methods on a throwaway branch of ``env_name``'s branch; every branch the
    drill made is deleted before it returns (the report is written by the caller)."""
    env = settings.environment(env_name)
    if env.provider != "neon":
        raise RollbotError(
            f"environment {env.name!r} uses provider {env.provider!r}: `rollbot drill --env` "
            "practises Neon environments (without --env the drill runs on a local PostgreSQL)"
        )
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    drill = NeonDrill(env, output, echo)
    try:
        drill.start()
        drill.start_core()
        for method_id, title, practise in PRACTICE:
            echo(f"practising: {title}")
            outcome = drill.outcome(method_id, title)
            try:
                practise(drill, outcome)
            except Exception as exc:  # one broken method must not hide the other's result
                outcome.problems.append(f"the drill could not complete this method: {redact(exc)}")
            drill.core.close(outcome)
            drill.result.outcomes.append(outcome)
            verdict = "verified" if outcome.verified else "NOT verified"
            echo(f"  {outcome.title}: {outcome.seconds:.1f}s, {verdict}")
            for problem in outcome.problems:
                echo(f"    problem: {redact(problem)}")
    finally:
        drill.finish()
        drill.result.finished_at = datetime.now(UTC)
    return drill.result
