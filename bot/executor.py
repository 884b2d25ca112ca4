"""Runs an incident's queued steps, each exactly once, durably.

A step is claimed with a conditional UPDATE (``queued -> running`` only if it is
still queued), so two workers, a Slack retry or a double click cannot run it
twice. While it runs, its lease is refreshed; a step found ``running`` whose
owner is dead (same host, process gone) or whose lease expired becomes
``interrupted`` at start-up, and a person decides: never a silent re-run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import auto_ticks
from bot.errors import RollbotError
from bot.inbox import Inbox, interruption_notice
from bot.lifecycle import STEP_DONE, State, StepStatus
from bot.models import Incident, Step
from bot.redact import redact
from bot.service import Rollbot, parse_ref
from bot.steps import StepResult, build_step

log = logging.getLogger(__name__)
HOST = socket.gethostname()


class ProgressSink(Protocol):
    """Where step progress goes (the Slack thread, the terminal, the drill's timer)."""

    def step_started(self, incident: Incident, step: Step) -> None: ...
    def step_progress(self, incident: Incident, step: Step, text: str) -> None: ...
    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None: ...


class NullSink:
    def step_started(self, incident: Incident, step: Step) -> None:
        pass

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        pass

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        pass


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a permission refusal means it does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Executor:
    def __init__(
        self,
        bot: Rollbot,
        *,
        lease: timedelta = timedelta(seconds=60),
        heartbeat_seconds: float = 5.0,
        workers: int = 4,
    ) -> None:
        self.bot = bot
        self.lease = lease
        self.heartbeat_seconds = heartbeat_seconds
        self.worker_id = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._lock = threading.Lock()
        self._driving: set[int] = set()

    # ------------------------------------------------------------ crash recovery
    def _owner_dead(self, claimed_by: str | None, heartbeat_at: object) -> bool:
        if not claimed_by:
            return True
        host, _, rest = claimed_by.partition(":")
        pid_text = rest.split(":", 1)[0]
        if claimed_by == self.worker_id:
            return False
        if host == HOST and pid_text.isdigit():
            return not process_alive(int(pid_text)) or int(pid_text) == os.getpid()
        return heartbeat_at is None or heartbeat_at < self.bot.clock() - self.lease  # type: ignore[operator]

    def process_gone(self, claimed_by: str) -> bool:
        """True when ``claimed_by`` names a process on this host that no longer runs."""
        host, _, rest = claimed_by.partition(":")
        pid_text = rest.split(":", 1)[0]
        if claimed_by == self.worker_id or host != HOST or not pid_text.isdigit():
            return False
        return not process_alive(int(pid_text))

    def recover(self) -> list[Step]:
        """Turn steps left ``running`` by a dead worker into ``interrupted`` (at start-up, and
        periodically in a worker), queue a notice to the people on the incident, and clean up
        what the step left behind. A step whose notice or cleanup a crash cut short has no
        recorded leftovers yet: the next recovery does both again (both act once)."""
        interrupted = self._interrupt_steps_of_dead_workers()
        with self.bot.store.read() as session:
            unsettled = [
                s
                for s in session.scalars(
                    select(Step).where(Step.status == StepStatus.INTERRUPTED.value)
                ).all()
                if not (s.result and "leftovers" in s.result)
            ]
        inbox = Inbox(self.bot.store)
        for step in unsettled:
            try:
                inbox.add_notice(interruption_notice(step))
                self.clean_up_interrupted(step.id)
            except Exception as exc:  # the decision is still the person's; say what failed
                log.warning("after interrupted step %s: %s", step.id, redact(exc))
        return interrupted

    def _interrupt_steps_of_dead_workers(self) -> list[Step]:
        with self.bot.store.read() as session:
            rows = session.scalars(
                select(Step).where(Step.status == StepStatus.RUNNING.value)
            ).all()
        dead = [s for s in rows if self._owner_dead(s.claimed_by, s.heartbeat_at)]
        interrupted: list[Step] = []
        if not dead:
            return interrupted
        with self.bot.store.session() as session:
            for step in dead:
                if self._requeue_to_resume(session, step):
                    continue
                changed = session.execute(
                    update(Step)
                    .where(Step.id == step.id, Step.status == StepStatus.RUNNING.value)
                    .values(
                        status=StepStatus.INTERRUPTED.value, error="interrupted: its worker stopped"
                    )
                ).rowcount
                if changed:
                    interrupted.append(step)
                    self.bot.audit.record(
                        session,
                        actor="rollbot",
                        kind="interrupted",
                        message=(
                            f"INC-{step.incident_id} step {step.seq} ({step.title}) was interrupted "
                            f"(worker {step.claimed_by} stopped); a person must retry, skip or abandon it"
                        ),
                        incident_id=step.incident_id,
                        data={"step_id": step.id},
                    )
        return interrupted

    def _requeue_to_resume(self, session: Session, step: Step) -> bool:
        """A dead worker's step whose mutation was sent and recorded goes back in the queue:
        its next run polls the recorded operation (``Step.resume``), never sends it again."""
        if not (step.external or {}).get("sent"):
            return False
        if getattr(build_step(step.kind, step.params), "resume", None) is None:
            return False
        changed = session.execute(
            update(Step)
            .where(Step.id == step.id, Step.status == StepStatus.RUNNING.value)
            .values(status=StepStatus.QUEUED.value, claimed_by=None, queued_at=self.bot.clock())
        ).rowcount
        if changed:
            self.bot.audit.record(
                session,
                actor="rollbot",
                kind="resumed",
                message=(
                    f"INC-{step.incident_id} step {step.seq} ({step.title}): its worker "
                    f"({step.claimed_by}) stopped after the operation was sent; it resumes "
                    "waiting for that operation (nothing is sent again)"
                ),
                incident_id=step.incident_id,
                data={"step_id": step.id, "external": step.external},
            )
        return bool(changed)

    def clean_up_interrupted(self, step_id: int) -> list[str]:
        """Remove what an interrupted step left behind, once; the lines say what happened.

        Leftovers are only listed, not removed, while another step of the same environment
        runs (it might own them)."""
        with self.bot.store.read() as session:
            step = session.get(Step, step_id)
            if step is None or step.status != StepStatus.INTERRUPTED.value:
                return []
            if step.result and "leftovers" in step.result:
                return list(step.result["leftovers"])
            incident = self.bot._load(session, step.incident_id)
            busy = session.scalars(
                select(Step.id)
                .join(Incident, Incident.id == Step.incident_id)
                .where(
                    Incident.environment == incident.environment,
                    Step.status == StepStatus.RUNNING.value,
                )
                .limit(1)
            ).first()
        impl = build_step(step.kind, step.params)
        hook = getattr(impl, "after_interruption", None)
        if hook is None:
            lines = ["nothing to clean up for this kind of step"]
        else:
            ctx = self.bot._context(incident, self.bot.environment_of(incident))
            ctx.external = dict(step.external or {})  # what it meant to create, if recorded
            try:
                lines = [redact(line) for line in hook(ctx, busy is None)]
            except RollbotError as exc:
                lines = [f"could not check what it left behind: {redact(exc)}"]
        with self.bot.store.session() as session:
            row = session.get(Step, step_id)
            if row is not None and not (row.result and "leftovers" in row.result):
                row.result = {**(row.result or {}), "leftovers": lines}
                self.bot.audit.record(
                    session,
                    actor="rollbot",
                    kind="cleanup",
                    message=f"INC-{row.incident_id} step {row.seq} after its interruption: "
                    + "; ".join(lines),
                    incident_id=row.incident_id,
                    data={"step_id": row.id},
                )
        return lines

    def resumable(self, min_idle: timedelta = timedelta(0)) -> list[int]:
        """Running incidents whose next step is queued but unclaimed (e.g. the process that
        started them stopped before its worker picked them up, or a person decided from the
        CLI): safe to submit again, since a claim is exactly-once. ``min_idle`` leaves alone
        a step that became ready only just now (the process that readied it claims it)."""
        now = self.bot.clock()
        with self.bot.store.read() as session:
            rows = session.scalars(
                select(Step)
                .join(Incident, Incident.id == Step.incident_id)
                .where(Incident.state == State.RUNNING.value)
                .order_by(Step.incident_id, Step.seq)
            ).all()
        by_incident: dict[int, list[Step]] = {}
        for step in rows:
            by_incident.setdefault(step.incident_id, []).append(step)
        ready = []
        for incident_id, steps in by_incident.items():
            pending = [s for s in steps if s.status not in {x.value for x in STEP_DONE}]
            if not pending or pending[0].status != StepStatus.QUEUED.value:
                continue
            times = [t for t in (pending[0].queued_at, *(s.finished_at for s in steps)) if t]
            if not times or now - max(times) >= min_idle:
                ready.append(incident_id)
        return ready

    # ------------------------------------------------------------ claiming
    def _claim_next(self, incident_id: int) -> Step | None:
        with self.bot.store.session() as session:
            incident = session.get(Incident, incident_id)
            if incident is None or incident.state != State.RUNNING.value:
                return None
            steps = session.scalars(
                select(Step).where(Step.incident_id == incident_id).order_by(Step.seq)
            ).all()
            for step in steps:
                if step.status in {s.value for s in STEP_DONE}:
                    continue
                if step.status != StepStatus.QUEUED.value:
                    return None  # running elsewhere, interrupted or failed: wait for a person
                now = self.bot.clock()
                claimed = session.execute(
                    update(Step)
                    .where(Step.id == step.id, Step.status == StepStatus.QUEUED.value)
                    .values(
                        status=StepStatus.RUNNING.value,
                        claimed_by=self.worker_id,
                        started_at=now,
                        heartbeat_at=now,
                        attempt=Step.attempt + 1,
                        result=None,
                        error=None,
                    )
                ).rowcount
                if not claimed:
                    return None
                self.bot.audit.record(
                    session,
                    actor="rollbot",
                    kind="step",
                    message=f"INC-{incident_id} step {step.seq} started: {step.title}",
                    incident_id=incident_id,
                    data={"step_id": step.id, "kind": step.kind, "worker": self.worker_id},
                )
                session.flush()
                session.refresh(step)
                return step
            return None

    def _store_external(self, step_id: int, data: dict[str, object]) -> None:
        """Durably, before the step goes on: a crash after this resumes from it."""
        with self.bot.store.session() as session:
            changed = session.execute(
                update(Step)
                .where(Step.id == step_id, Step.claimed_by == self.worker_id)
                .values(external=data)
            ).rowcount
        if not changed:
            raise RollbotError("this worker no longer holds the step; not going on with it")

    def _heartbeat(self, step_id: int) -> None:
        with self.bot.store.session() as session:
            session.execute(
                update(Step)
                .where(Step.id == step_id, Step.claimed_by == self.worker_id)
                .values(heartbeat_at=self.bot.clock())
            )

    # ------------------------------------------------------------ running
    def _run_one(self, step: Step, sink: ProgressSink) -> StepResult:
        incident = self.bot.get(step.incident_id)
        env = self.bot.environment_of(incident)
        ctx = self.bot._context(
            incident, env, report=lambda text: sink.step_progress(incident, step, text)
        )
        ctx.external = dict(step.external or {})
        ctx.store_external = lambda data: self._store_external(step.id, data)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_seconds):
                try:
                    self._heartbeat(step.id)
                except Exception:  # a missed heartbeat must not kill the step
                    log.warning("heartbeat failed for step %s", step.id, exc_info=True)

        beater = threading.Thread(target=beat, name=f"heartbeat-{step.id}", daemon=True)
        beater.start()
        sink.step_started(incident, step)
        try:
            impl = build_step(step.kind, step.params)
            if _needs_safety(impl) and not ctx.has_safety_snapshot():
                raise RollbotError(
                    f"refusing destructive step {step.title!r}: no verified safety snapshot "
                    "was taken first"
                )
            resume = getattr(impl, "resume", None)
            result = resume(ctx) if ctx.external.get("sent") and resume else impl.run(ctx)
        except RollbotError as exc:
            result = StepResult(False, redact(exc))
        except Exception as exc:
            log.error("step %s crashed:\n%s", step.id, redact(traceback.format_exc()))
            result = StepResult(False, f"unexpected error: {type(exc).__name__}: {redact(exc)}")
        finally:
            stop.set()
        self._finish(step, result)
        sink.step_finished(incident, step, result)
        return result

    def _finish(self, step: Step, result: StepResult) -> None:
        with self.bot.store.session() as session:
            row = session.get(Step, step.id)
            assert row is not None
            incident = self.bot._load(session, step.incident_id, lock=True)
            if result.ok and result.waits_for_person:
                self._wait_for_person(session, incident, row, result)
                return
            row.status = (StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED).value
            row.finished_at = self.bot.clock()
            row.result = result.stored()
            row.error = None if result.ok else result.summary
            if result.ok:
                self.bot._auto_tick(
                    session, incident, auto_ticks.from_step(row.kind, row.title, row.result)
                )
            self.bot.audit.record(
                session,
                actor="rollbot",
                kind="step",
                message=f"{incident.ref} step {row.seq} {'succeeded' if result.ok else 'failed'}: {row.title}: {result.summary}",
                incident_id=incident.id,
                data={"step_id": row.id},
            )
            if not result.ok:
                for later in incident.steps:
                    if later.status in (StepStatus.PENDING.value, StepStatus.QUEUED.value):
                        later.status = StepStatus.CANCELLED.value
                self.bot._transition(
                    session,
                    incident,
                    State.FAILED,
                    "rollbot",
                    "fail",
                    f"failed at step {row.seq}: {result.summary}",
                )
            elif all(s.status in {x.value for x in STEP_DONE} for s in incident.steps):
                self.bot._transition(
                    session,
                    incident,
                    State.VERIFYING,
                    "rollbot",
                    "verify",
                    "all steps done; verify and tick the after-rollback checklist",
                )

    def _wait_for_person(
        self, session: Session, incident: Incident, row: Step, result: StepResult
    ) -> None:
        """The step's work is a person's: it waits, the incident still running, until someone
        marks it done (``Rollbot.decide_step``); nothing after it runs before."""
        row.status = StepStatus.WAITING.value
        row.result = {**result.stored(), "instructions": result.waits_for_person}
        self.bot.audit.record(
            session,
            actor="rollbot",
            kind="step",
            message=f"{incident.ref} step {row.seq} waits for a person: {row.title}",
            incident_id=incident.id,
            data={"step_id": row.id},
        )

    def run_incident(self, ref: int | str, sink: ProgressSink | None = None) -> Incident:
        """Run queued steps in order until done, a failure, or a step that needs a person."""
        incident_id = parse_ref(ref)
        sink = sink or NullSink()
        while (step := self._claim_next(incident_id)) is not None:
            if not self._run_one(step, sink).ok:
                break
        return self.bot.get(incident_id)

    def submit(
        self,
        ref: int | str,
        sink: ProgressSink | None = None,
        done: Callable[[Incident], None] | None = None,
    ) -> Future[Incident] | None:
        """Run in the background; None when this executor is already driving the incident
        (a periodic resume scan and a click must not start a second driver)."""
        incident_id = parse_ref(ref)
        with self._lock:
            if incident_id in self._driving:
                return None
            self._driving.add(incident_id)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="rollbot-step")

        def work() -> Incident:
            try:
                result = self.run_incident(incident_id, sink)
            except Exception:
                log.error("background run of %s failed:\n%s", ref, redact(traceback.format_exc()))
                raise
            finally:
                with self._lock:
                    self._driving.discard(incident_id)
            if done:
                done(result)
            return result

        return self._pool.submit(work)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._driving)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool:
            self._pool.shutdown(wait=wait)


def _needs_safety(step: object) -> bool:
    """Destructive, and not one that takes its own copy (or where a copy cannot help)."""
    return bool(type(step).destructive) and (  # type: ignore[attr-defined]
        getattr(step, "safety_snapshot", "required") == "required"
    )
