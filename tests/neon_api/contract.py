"""The contract: Neon's own OpenAPI document, checked on every request and every response.

openapi-core validates types, formats, enums, required fields and security; on top of
that :func:`undocumented_fields` reports response fields the spec does not define (the
``allOf`` compositions Neon uses rule out openapi-core's own "forbid" policy).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from openapi_core.validation.request.exceptions import SecurityValidationError
from werkzeug.wrappers import Request, Response

SPEC_PATH = Path(
    os.environ.get(
        "NEON_OPENAPI_SPEC",
        Path(__file__).resolve().parents[3] / "shared" / "specs" / "neon-openapi.json",
    )
)


def spec_available() -> bool:
    """Whether the Neon spec is where the fake looks (tests ``pytest.skip`` without it)."""
    return SPEC_PATH.is_file()


def missing_spec_reason() -> str:
    return (
        f"the Neon OpenAPI spec is missing at {SPEC_PATH} (set NEON_OPENAPI_SPEC to its path): "
        "the fake Neon API validates every request and response against it"
    )


@dataclass(frozen=True)
class Contract:
    app: OpenAPI
    spec: dict[str, Any]
    host_url: str  # the spec's server, which openapi-core matches requests against
    base_path: str  # "/api/v2"
    templates: tuple[tuple[re.Pattern[str], str], ...]  # literal segments first

    def template_for(self, path: str) -> str | None:
        """The spec path (``/projects/{project_id}``) that ``path`` under the base matches."""
        return next((t for pattern, t in self.templates if pattern.fullmatch(path)), None)


def _templates(spec: dict[str, Any]) -> tuple[tuple[re.Pattern[str], str], ...]:
    by_literals = sorted(spec["paths"], key=lambda t: t.count("{"))
    return tuple(
        (re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(t))), t) for t in by_literals
    )


@functools.cache
def load_contract() -> Contract:
    """The parsed spec, once per process. Not spec-validated: that costs 1 s a load."""
    if not spec_available():
        raise FileNotFoundError(missing_spec_reason())
    spec = json.loads(SPEC_PATH.read_text())
    server = urlsplit(spec["servers"][0]["url"])
    app = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    host = f"{server.scheme}://{server.netloc}/"
    return Contract(app, spec, host, server.path.rstrip("/"), _templates(spec))


class _AsSpecServer(WerkzeugOpenAPIRequest):
    """A request to the fake presented as one to the spec's server (the path is the same)."""

    def __init__(self, request: Request, host_url: str) -> None:
        super().__init__(request)
        self._host_url = host_url

    @property
    def host_url(self) -> str:
        return self._host_url


@dataclass
class RequestCheck:
    """``outcome``: ok, unknown_path, unknown_method, unauthenticated or invalid."""

    outcome: str
    detail: str = ""
    parameters: Any = None
    body: Any = None


def describe(error: Exception) -> str:
    """openapi-core's message plus the JSON Schema errors it wraps."""
    cause = error.__cause__
    inner = [getattr(e, "message", str(e)) for e in getattr(cause, "schema_errors", None) or ()]
    if not inner and cause is not None:
        inner = [str(cause)]
    text = str(error).split(": Value ")[0]  # the full value repeats the body
    return "; ".join([text, *inner])


def check_request(contract: Contract, request: Request) -> RequestCheck:
    result = contract.app.unmarshal_request(_AsSpecServer(request, contract.host_url))
    for error in result.errors:
        if isinstance(error, PathNotFound | ServerNotFound):
            return RequestCheck("unknown_path", "path not in the spec")
        if isinstance(error, OperationNotFound):
            return RequestCheck("unknown_method", f"{request.method} not in the spec for this path")
    if any(isinstance(e, SecurityValidationError) for e in result.errors):
        return RequestCheck("unauthenticated", "no Authorization: Bearer <api key>")
    if result.errors:
        return RequestCheck("invalid", "; ".join(describe(e) for e in result.errors))
    return RequestCheck("ok", parameters=result.parameters, body=result.body)


def check_response(
    contract: Contract, template: str | None, request: Request, response: Response
) -> list[str]:
    """Problems of ``response`` against the spec (``template``: the matched spec path)."""
    errors = contract.app.iter_response_errors(  # validation only: unmarshalling is 10x slower
        _AsSpecServer(request, contract.host_url), WerkzeugOpenAPIResponse(response)
    )
    problems = [describe(e) for e in errors]
    if problems or template is None or response.status_code == 204:
        return problems
    schema = response_schema(contract.spec, template, request.method, response.status_code)
    if schema is not None:
        problems += undocumented_fields(contract.spec, schema, response.get_json(), "body")
    return problems


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema(
    spec: dict[str, Any], template: str, method: str, status: int
) -> dict[str, Any] | None:
    responses = spec["paths"][template][method.lower()]["responses"]
    found = responses.get(str(status)) or responses.get("default")
    if found is None:
        return None
    content = resolve(spec, found).get("content", {}).get("application/json")
    return content.get("schema") if content else None


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
    """Properties and additionalProperties of an object schema, allOf merged; None: unchecked."""
    schema = resolve(spec, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return None
    props = dict(schema.get("properties", {}))
    extra = schema.get("additionalProperties")
    for part in schema.get("allOf", []):
        merged = _properties(spec, part)
        if merged is None:
            return None
        props |= merged[0]
        extra = extra if extra is not None else merged[1]
    if not props and extra is None:
        return None
    return props, extra


def undocumented_fields(
    spec: dict[str, Any], schema: dict[str, Any], value: Any, at: str
) -> list[str]:
    """Paths of fields in ``value`` that ``schema`` does not define (recursively)."""
    schema = resolve(spec, schema)
    if isinstance(value, list) and "items" in schema:
        return [
            p
            for i, v in enumerate(value)
            for p in undocumented_fields(spec, schema["items"], v, f"{at}[{i}]")
        ]
    shape = _properties(spec, schema) if isinstance(value, dict) else None
    if shape is None:
        return []
    props, extra = shape
    problems: list[str] = []
    for key, item in value.items():
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is None and extra is not True:
            problems.append(f"{at}.{key} is not in the spec")
        elif sub is not None:
            problems += undocumented_fields(spec, sub, item, f"{at}.{key}")
    return problems
