"""Terminal adapter (``rollbot shell``): the Slack flow with numbered choices.

Like Hubot's shell adapter or Errbot's text backend: the same decision tree,
the same core calls, a real incident in the store, without a chat. End of
input leaves the incident where it is (it is durable), never half-written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from bot.errors import RollbotError
from bot.lifecycle import in_words
from bot.restore_choice import parse_restore_time
from bot.runbook import RUNBOOK, Choice
from bot.service import Rollbot
from bot.steps import RestoreSource


class EndOfInput(Exception):
    pass


class Console:
    def __init__(
        self, bot: Rollbot, actor: str, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
    ) -> None:
        self.bot, self.actor, self.stdin, self.stdout = bot, actor, stdin, stdout

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def ask(self, prompt: str) -> str:
        self.stdout.write(f"{prompt} ")
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise EndOfInput
        return line.strip()

    def pick(self, question: str, options: Sequence[str]) -> int:
        """Numbered choice; re-asks on bad input; returns the 0-based index."""
        self.say(question)
        for n, label in enumerate(options, start=1):
            self.say(f"  {n}) {label}")
        while True:
            answer = self.ask(">")
            if answer.lower() in ("q", "quit", "exit"):
                raise EndOfInput
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return int(answer) - 1
            self.say(f"Please enter a number from 1 to {len(options)} (or q to leave).")

    def run(self) -> int:
        self.say("rollbot shell: walk the rollback runbook. q leaves; the incident stays recorded.")
        try:
            description = self.ask("What is wrong? (one line)")
            incident = self.bot.open_incident(self.actor, description, source="console")
            self.say(f"Opened {incident.ref}.")
            incident = self._triage(incident.ref)
            self._choose_and_request(incident.ref)
        except EndOfInput:
            self.say("\nLeaving the shell; the incident and its audit trail are in the store.")
        return 0

    def _triage(self, ref: str):
        while True:
            incident = self.bot.get(ref)
            environments = self.bot.environments_to_choose(incident)
            if environments:
                idx = self.pick(f"Which {incident.tier} environment?", environments)
                self.bot.choose_environment(ref, environments[idx], self.actor)
                continue
            node = RUNBOOK.walk(incident.answers)
            if isinstance(node, Choice):
                return incident
            idx = self.pick(node.question, [c.label for c in node.choices])
            self.bot.answer(ref, node.choices[idx].id, self.actor)

    def _choose_and_request(self, ref: str) -> None:
        incident = self.bot.get(ref)
        leaf = self.bot.leaf(incident)
        self.say(f"Runbook: {leaf.summary or leaf.label}")
        methods = self.bot.allowed_methods(incident)  # the leaf's, then scenario actions
        scenarios = {m: s.title for s in RUNBOOK.scenarios for m in s.methods}
        labels = [
            f"{RUNBOOK.method(m).title}{' (recommended)' if i == 0 else ''}"
            + (f" [{scenarios[m]}]" if m not in leaf.methods and m in scenarios else "")
            for i, m in enumerate(methods)
        ]
        while True:
            idx = self.pick("Which method?", labels)
            method = methods[idx]
            try:
                incident = self.bot.choose_method(ref, method, self.actor)
            except RollbotError as exc:
                self.say(f"Cannot use that method here: {exc}")
                continue
            self._show_plan(incident)
            sources = self.bot.restore_sources(ref)
            options = ["Request approval", "Choose another method", "Cancel the incident"]
            if sources:
                options.append("Restore another snapshot, or to a time")
            action = self.pick("Next?", options)
            while action == 3:
                incident = self._pick_source(ref, sources)
                self._show_plan(incident)
                sources = self.bot.restore_sources(ref)
                action = self.pick("Next?", options)
            if action == 1:
                continue
            if action == 2:
                self.bot.cancel(ref, self.actor, "cancelled from the shell")
                self.say(f"{incident.ref} cancelled.")
                return
            incident = self.bot.request_approval(ref, self.actor)
            _valid, needed = self.bot.approval_status(incident)
            self.say(
                f"{incident.ref} is {in_words(incident.state)}: needs {needed} approval(s) "
                f"from someone allowed for {incident.tier}"
                + (" other than you." if incident.tier == "production" else ".")
            )
            self.say(f"  approve: rollbot approve {incident.ref} --as APPROVER")
            self.say(f"  then run: rollbot run {incident.ref}")
            return

    def _pick_source(self, ref: str, sources: list[RestoreSource]):
        """Re-plan with a picked snapshot or restore time (re-asks on a refused one)."""
        timezone = self.bot.settings.business_hours.timezone
        labels = [
            f"{s.name}  {s.label}"
            + (" (in the plan)" if s.chosen else "")
            + (f"  ** {s.warning} **" if s.warning else "")
            for s in sources
        ]
        while True:
            idx = self.pick(
                "Restore which snapshot?", [*labels, f"The newest before a time ({timezone})"]
            )
            try:
                if idx < len(sources):
                    return self.bot.replan(ref, self.actor, snapshot=sources[idx].name)
                when = parse_restore_time(
                    self.ask(f"Restore to (YYYY-MM-DD HH:MM, {timezone}):"), timezone
                )
                return self.bot.replan(ref, self.actor, restore_to=when)
            except RollbotError as exc:
                self.say(f"Cannot restore that: {exc}")

    def _show_plan(self, incident) -> None:
        self.say(f"Plan for {incident.ref} ({incident.method}):")
        for step in incident.steps:
            self.say(f" {step.seq}. {step.plan_text}")


def run_shell(
    bot: Rollbot, actor: str, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    return Console(bot, actor, stdin or sys.stdin, stdout or sys.stdout).run()
