"""Secret redaction for everything that leaves the process, and for what people type.

Messages, logs, audit events and reports pass through :func:`redact` so that a
database password or an API key never reaches a person or a file. The known
secrets are learned at start-up (``bot.config.register_configured_secrets``),
so even the first message of a fresh process is masked. Text a person types
(an incident description, a root cause) goes through :func:`scrub_user_text`
before it is stored: it also masks token shapes that only make sense there.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@host  ->  scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)"
)
# key=value forms used by libpq conninfo strings and env dumps
_KV_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey|PGPASSWORD)\s*[=:]\s*)"
    r"(?P<q>['\"]?)(?P<val>[^\s'\"&;]+)(?P=q)",
    re.IGNORECASE,
)
# Slack and common token shapes
_TOKENS = re.compile(r"\b(?:xox[abposr]-[0-9A-Za-z-]{6,}|xapp-[0-9A-Za-z-]{6,}|AKIA[0-9A-Z]{16})\b")
# Only in typed text: PagerDuty routing/integration keys (32 hex), user API tokens
# ("u+" and 18 more), AWS secret keys (40 base64 characters).
_TYPED_TOKENS = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{32}|u\+[0-9A-Za-z_-]{18}|[0-9A-Za-z/+]{40})(?![0-9A-Za-z])"
)

_lock = threading.Lock()
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value (e.g. read from an env var) so it is masked wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _known_secrets.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def register_env_secrets(names: Iterable[str]) -> None:
    """Register the values of the named environment variables as secrets."""
    register_secrets(os.environ.get(name) for name in names)


def redact(text: object) -> str:
    """Return ``text`` as a string with passwords, tokens and known secrets masked."""
    s = str(text)
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    s = _URL_PASSWORD.sub(lambda m: m.group("prefix") + MASK, s)
    s = _KV_SECRET.sub(lambda m: m.group("key") + m.group("q") + MASK + m.group("q"), s)
    return _TOKENS.sub(MASK, s)


def scrub_user_text(text: str) -> str:
    """What a person typed, safe to store, log, audit and post."""
    return _TYPED_TOKENS.sub(MASK, redact(text))


def redact_obj(value: object) -> object:
    """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value
