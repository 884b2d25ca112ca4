"""The contract: PagerDuty's own OpenAPI documents, checked on every request and response.

Two documents: the Events API v2 (``https://events.pagerduty.com/v2``: ``/enqueue``) and
the REST API v2 (``https://api.pagerduty.com``: ``/oncalls``). The fake serves both from
one origin, so a path under ``/v2/`` is the Events API and anything else REST.

openapi-core checks types, enums, required fields and security; :func:`undocumented_fields`
adds what it does not: fields the spec does not define, in request bodies (a misspelt
``payload`` field is silently dropped by PagerDuty) and in the fake's responses. The Events
spec writes its 400 and 429 responses as ``description: "#/components/..."`` strings
instead of ``$ref``s (a bug in the spec), so those bodies are checked against its
``Error`` response by hand.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.request.exceptions import SecurityValidationError
from openapi_schema_validator import OAS30Validator
from werkzeug.wrappers import Request, Response

from tests.openapi_contract import (
    AsSpecServer,
    Templates,
    describe,
    documented_response,
    path_templates,
    resolve,
    response_schema,
    undocumented_fields,
)

SPECS_DIR = Path(
    os.environ.get("PAGERDUTY_SPECS_DIR", Path(__file__).resolve().parents[3] / "shared" / "specs")
)
EVENTS_SPEC = SPECS_DIR / "pagerduty-events-v2-openapiv3.json"
REST_SPEC = SPECS_DIR / "pagerduty-rest-v2-openapiv3.json"
EVENTS_PREFIX = "/v2/"


def spec_available() -> bool:
    """Whether both PagerDuty specs are where the fake looks."""
    return EVENTS_SPEC.is_file() and REST_SPEC.is_file()


def missing_spec_reason() -> str:
    return (
        f"PagerDuty's OpenAPI specs are missing in {SPECS_DIR} (set PAGERDUTY_SPECS_DIR): "
        "the fake PagerDuty serves unchecked, and contract checks are skipped"
    )


@dataclass(frozen=True)
class Contract:
    name: str  # "Events API v2" / "REST API v2"
    app: OpenAPI
    spec: dict[str, Any]
    host_url: str  # the spec server's origin, which openapi-core matches requests against
    base_path: str  # "/v2" or ""
    templates: Templates  # literal segments first

    def template_for(self, path: str) -> str | None:
        """The spec path (``/enqueue``) that the full request ``path`` matches."""
        under = path.removeprefix(self.base_path)
        return next((t for pattern, t in self.templates if pattern.fullmatch(under)), None)


def _load(name: str, path: Path) -> Contract:
    spec = json.loads(path.read_text())
    server = urlsplit(spec["servers"][0]["url"])
    # Not spec-validated: the REST document fails it on one bad default (see PROVENANCE.md).
    app = OpenAPI(SchemaPath.from_dict(spec), config=Config(spec_validator_cls=None))
    host = f"{server.scheme}://{server.netloc}/"
    return Contract(name, app, spec, host, server.path.rstrip("/"), path_templates(spec))


@functools.cache
def load_contracts() -> tuple[Contract, Contract]:
    """(events, rest), parsed once per process."""
    if not spec_available():
        raise FileNotFoundError(missing_spec_reason())
    return _load("Events API v2", EVENTS_SPEC), _load("REST API v2", REST_SPEC)


def contract_for(path: str) -> Contract:
    events, rest = load_contracts()
    return events if path.startswith(EVENTS_PREFIX) else rest


@dataclass
class RequestCheck:
    """``outcome``: ok, unknown_path, unknown_method, unauthenticated or invalid."""

    outcome: str
    detail: str = ""


def check_request(contract: Contract, request: Request) -> RequestCheck:
    result = contract.app.unmarshal_request(AsSpecServer(request, contract.host_url))
    for error in result.errors:
        if isinstance(error, PathNotFound | ServerNotFound):
            return RequestCheck("unknown_path", f"path not in the {contract.name} spec")
        if isinstance(error, OperationNotFound):
            return RequestCheck("unknown_method", f"{request.method} not in the spec for this path")
    if any(isinstance(e, SecurityValidationError) for e in result.errors):
        return RequestCheck("unauthenticated", "no Authorization header")
    problems = [describe(e) for e in result.errors]
    template = contract.template_for(request.path)
    schema = _request_schema(contract.spec, template, request.method) if template else None
    if schema is not None and not problems:
        problems += undocumented_fields(
            contract.spec, schema, request.get_json(silent=True), "body"
        )
    return RequestCheck("invalid", "; ".join(problems)) if problems else RequestCheck("ok")


def check_response(contract: Contract, request: Request, response: Response) -> list[str]:
    """Problems of ``response`` against the spec; ``["undocumented status"]`` alone when
    the spec lists no such status for the operation."""
    errors = list(
        contract.app.iter_response_errors(
            AsSpecServer(request, contract.host_url), WerkzeugOpenAPIResponse(response)
        )
    )
    if any(isinstance(e, ResponseNotFound) for e in errors):
        return [UNDOCUMENTED_STATUS]
    problems = [describe(e) for e in errors]
    template = contract.template_for(request.path)
    if problems or template is None or not response.data:
        return problems
    body = response.get_json(silent=True)
    schema = response_schema(contract.spec, template, request.method, response.status_code)
    if schema is None and contract.name.startswith("Events"):
        schema = _events_error_schema(contract.spec, template, request.method, response)
        if schema is not None:
            problems += [f"body: {e.message}" for e in OAS30Validator(schema).iter_errors(body)]
    if schema is not None:
        problems += undocumented_fields(contract.spec, schema, body, "body")
    return problems


UNDOCUMENTED_STATUS = "undocumented status"


def _request_schema(spec: dict[str, Any], template: str, method: str) -> dict[str, Any] | None:
    body = spec["paths"][template].get(method.lower(), {}).get("requestBody")
    content = resolve(spec, body).get("content", {}).get("application/json") if body else None
    return content.get("schema") if content else None


def _events_error_schema(
    spec: dict[str, Any], template: str, method: str, response: Response
) -> dict[str, Any] | None:
    """The ``Error`` schema, for a 4xx the Events spec documents without content."""
    found = documented_response(spec, template, method, response.status_code)
    if found is None or "content" in found or response.status_code // 100 != 4:
        return None
    error = spec["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    return resolve(spec, error)
