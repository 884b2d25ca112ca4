"""The contract: Neon's own OpenAPI document, checked on every request and every response.

openapi-core validates types, formats, enums, required fields and security; on top of
that :func:`undocumented_fields` reports response fields the spec does not define (the
``allOf`` compositions Neon uses rule out openapi-core's own "forbid" policy).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from openapi_core.validation.request.exceptions import SecurityValidationError
from werkzeug.wrappers import Request, Response

from tests.openapi_contract import (
    AsSpecServer,
    Templates,
    describe,
    path_templates,
    response_schema,
    undocumented_fields,
)

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
    templates: Templates  # literal segments first

    def template_for(self, path: str) -> str | None:
        """The spec path (``/projects/{project_id}``) that ``path`` under the base matches."""
        return next((t for pattern, t in self.templates if pattern.fullmatch(path)), None)


@functools.cache
def load_contract() -> Contract:
    """The parsed spec, once per process. Not spec-validated: that costs 1 s a load."""
    if not spec_available():
        raise FileNotFoundError(missing_spec_reason())
    spec = json.loads(SPEC_PATH.read_text())
    server = urlsplit(spec["servers"][0]["url"])
    app = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    host = f"{server.scheme}://{server.netloc}/"
    return Contract(app, spec, host, server.path.rstrip("/"), path_templates(spec))


@dataclass
class RequestCheck:
    """``outcome``: ok, unknown_path, unknown_method, unauthenticated or invalid."""

    outcome: str
    detail: str = ""
    parameters: Any = None
    body: Any = None


def check_request(contract: Contract, request: Request) -> RequestCheck:
    result = contract.app.unmarshal_request(AsSpecServer(request, contract.host_url))
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
        AsSpecServer(request, contract.host_url), WerkzeugOpenAPIResponse(response)
    )
    problems = [describe(e) for e in errors]
    if problems or template is None or response.status_code == 204:
        return problems
    schema = response_schema(contract.spec, template, request.method, response.status_code)
    if schema is not None:
        problems += undocumented_fields(contract.spec, schema, response.get_json(), "body")
    return problems
