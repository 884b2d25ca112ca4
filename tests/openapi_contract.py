"""What the fakes of Neon and PagerDuty share to check traffic against an OpenAPI document:
openapi-core does types, formats, enums, required fields and security; this adds what it
does not: the spec path a request matches, and fields the spec does not define (the
``allOf`` compositions both vendors use rule out openapi-core's own "forbid" policy)."""

from __future__ import annotations

import re
from typing import Any

from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from werkzeug.wrappers import Request

Templates = tuple[tuple[re.Pattern[str], str], ...]


def path_templates(spec: dict[str, Any]) -> Templates:
    """Each spec path as a pattern, those with more literal segments first."""
    by_literals = sorted(spec["paths"], key=lambda t: t.count("{"))
    return tuple(
        (re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(t))), t) for t in by_literals
    )


class AsSpecServer(WerkzeugOpenAPIRequest):
    """A request to a fake presented as one to the spec's server (the path is the same)."""

    def __init__(self, request: Request, host_url: str) -> None:
        super().__init__(request)
        self._host_url = host_url

    @property
    def host_url(self) -> str:
        return self._host_url


def describe(error: Exception) -> str:
    """openapi-core's message plus the JSON Schema errors it wraps."""
    cause = error.__cause__
    inner = [getattr(e, "message", str(e)) for e in getattr(cause, "schema_errors", None) or ()]
    if not inner and cause is not None:
        inner = [str(cause)]
    text = str(error).split(": Value ")[0]  # the full value repeats the body
    return "; ".join([text, *inner])


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
        node = target
    return node


def documented_response(spec: dict[str, Any], template: str, method: str, status: int) -> Any:
    """The spec's response for ``status`` (or its ``4XX`` class, or ``default``)."""
    responses = spec["paths"][template][method.lower()]["responses"]
    return (
        responses.get(str(status))
        or responses.get(f"{str(status)[0]}XX")
        or responses.get("default")
    )


def response_schema(
    spec: dict[str, Any], template: str, method: str, status: int
) -> dict[str, Any] | None:
    found = documented_response(spec, template, method, status)
    if found is None:
        return None
    content = resolve(spec, found).get("content", {}).get("application/json")
    return content.get("schema") if content else None


_SHAPING = frozenset({"properties", "additionalProperties", "allOf", "anyOf", "oneOf"})


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
    """Properties and additionalProperties of an object schema, allOf merged; None: unchecked."""
    schema = resolve(spec, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return None
    props = dict(schema.get("properties", {}))
    extra = schema.get("additionalProperties")
    for part in schema.get("allOf", []):
        if not _SHAPING.intersection(resolve(spec, part)):
            continue  # only constraints (required, type): it adds no fields
        merged = _properties(spec, part)
        if merged is None:
            return None
        props |= merged[0]
        extra = extra if extra is not None else merged[1]
    if not props and extra is None:
        return None  # a free-form object (PagerDuty's custom_details)
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
