"""Errors a person can act on.

Every error rollbot shows to a person derives from :class:`RollbotError`; its
message is one line, already safe to print (no secrets, no stack trace).
Adapters (CLI, Slack) catch ``RollbotError`` and render ``str(err)``.
"""

from __future__ import annotations


class RollbotError(Exception):
    """A failure with a clear, one-line, secret-free message for a person."""

    exit_code = 2


class ConfigError(RollbotError):
    """The configuration is missing or invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class NotFoundError(RollbotError):
    """An incident, step, environment or snapshot that does not exist."""


class IllegalTransitionError(RollbotError):
    """A state change that the incident or step state machine does not allow."""


class ApprovalRefusedError(RollbotError):
    """An approval attempt that the tier's policy refuses."""


class DuplicateRequestError(RollbotError):
    """The same request (idempotency key) was already handled; nothing was done again.

    Not a refusal: a Slack retry, a double click or a re-claimed inbox row. It
    carries the incident the first handling acted on (e.g. the one it opened).
    """

    def __init__(self, message: str, incident_id: int | None = None) -> None:
        super().__init__(message)
        self.incident_id = incident_id


class ProviderError(RollbotError):
    """An external system (PostgreSQL, Neon, RDS, ...) failed or refused."""


class SnapshotInvalidError(ProviderError):
    """A snapshot is missing, truncated or does not match its checksum."""


class NotAuthorizedError(RollbotError):
    """The person lacks the role an action needs (see ``bot.authz``)."""


class StaleRequestError(RollbotError):
    """A recorded request waited longer than rollbot acts on (e.g. through an outage)."""


class TamperedRequestError(RollbotError):
    """A request whose parts disagree: a button value naming another incident than the message
    it was clicked on, a form rollbot did not open for this person."""
