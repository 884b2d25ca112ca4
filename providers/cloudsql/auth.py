"""Google credentials and the Admin API service object for one ``[cloudsql]`` section.

Credentials come from Google's application-default chain, or from the key file the
section's ``credentials_env`` names; ``auth = "none"`` (a local emulator or an
authenticating proxy only) sends none. Missing credentials are one line saying how to
provide them, never google-auth's traceback.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import google.auth
import google_auth_httplib2
import httplib2
from google.auth.exceptions import DefaultCredentialsError
from googleapiclient import discovery

from bot.errors import ConfigError
from bot.redact import redact
from providers.cloudsql.config import CloudSqlConfig

SCOPES = ("https://www.googleapis.com/auth/sqlservice.admin",)
HTTP_TIMEOUT_SECONDS = 30.0
HOW_TO_AUTHENTICATE = (
    "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file, or run rollbot on GCP with a service account that has the "
    "Cloud SQL Admin role"
)


def credentials(cfg: CloudSqlConfig) -> Any:
    """The section's Google credentials, scoped for the Admin API."""
    path = os.environ.get(cfg.credentials_env) if cfg.credentials_env else None
    try:
        if path and cfg.credentials_env != "GOOGLE_APPLICATION_CREDENTIALS":
            found, _ = google.auth.load_credentials_from_file(path, scopes=list(SCOPES))
        else:  # google-auth reads GOOGLE_APPLICATION_CREDENTIALS itself, then the chain
            found, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        first = redact(str(exc).split(". ")[0].strip().rstrip("."))
        source = f"${cfg.credentials_env}" if path else "application-default credentials"
        raise ConfigError(
            f"no usable Google credentials for Cloud SQL ({source}: {first}); "
            + HOW_TO_AUTHENTICATE
        ) from None
    return found


@functools.cache
def _document(path: Path) -> str:
    try:
        text = path.read_text()
        json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cloudsql.discovery_document {path}: not a readable JSON discovery document ({exc})"
        ) from None
    return text


def build_service(cfg: CloudSqlConfig) -> Any:
    """``sqladmin`` v1 rooted at ``cfg.api_url`` (the paths are ``v1/projects/...``)."""
    http: Any = httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS)
    if cfg.auth == "application_default":
        http = google_auth_httplib2.AuthorizedHttp(credentials(cfg), http=http)
    options = {"api_endpoint": cfg.api_url.rstrip("/") + "/"}
    if cfg.discovery_document is not None:
        return discovery.build_from_document(
            _document(cfg.discovery_document), http=http, client_options=options
        )
    return discovery.build(
        "sqladmin",
        "v1",
        http=http,
        client_options=options,
        static_discovery=True,  # the document bundled with the library: no network
        cache_discovery=False,
    )
