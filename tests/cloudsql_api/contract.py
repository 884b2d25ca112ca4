"""The contract: Google's Cloud SQL Admin API v1 discovery document, on every request and
every response of the fake.

A request must match a method's path template and HTTP method; its query parameters must
be the method's or the API's global ones (required ones present, typed values valid); its
body must validate against the schema the method's ``request.$ref`` names, and every
response against ``response.$ref``. Discovery schemas become JSON Schema (draft 7) here:
``$ref: Name`` -> ``#/definitions/Name``, ``int64`` strings must be digits,
``google-datetime`` must be RFC 3339, an object accepts only the properties the document
defines, and a property whose description starts with "Required." is required.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

SPEC_PATH = Path(
    os.environ.get(
        "CLOUDSQL_DISCOVERY_SPEC",
        Path(__file__).resolve().parents[3] / "shared" / "specs" / "sqladmin.v1.discovery.json",
    )
)
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
FORMATS = {
    "int64": r"^-?\d+$",
    "uint64": r"^\d+$",
    "google-datetime": RFC3339,
    "google-duration": r"^-?\d+(\.\d{1,9})?s$",
}


def spec_available() -> bool:
    return SPEC_PATH.is_file()


def missing_spec_reason() -> str:
    return (
        f"the Cloud SQL Admin API discovery document is missing at {SPEC_PATH} (set "
        "CLOUDSQL_DISCOVERY_SPEC to its path): the fake Cloud SQL API checks every request "
        "and response against it"
    )


@dataclass(frozen=True)
class ApiMethod:
    id: str  # "sql.instances.clone"
    http_method: str
    path: str  # "v1/projects/{project}/instances/{instance}/clone"
    pattern: re.Pattern[str]
    parameters: dict[str, Any]
    request_ref: str | None
    response_ref: str | None

    @property
    def short(self) -> str:
        return self.id.removeprefix("sql.")  # "instances.clone"


@dataclass(frozen=True)
class Contract:
    document: dict[str, Any]
    methods: tuple[ApiMethod, ...]
    definitions: dict[str, Any]

    def match(self, http_method: str, path: str) -> tuple[ApiMethod | None, dict[str, str], str]:
        """The method for ``path`` (no leading slash), its path values, or why none matched."""
        on_path = [(m, m.pattern.fullmatch(path)) for m in self.methods]
        on_path = [(m, found) for m, found in on_path if found]
        if not on_path:
            return None, {}, "path not in the discovery document"
        literal_first = sorted(on_path, key=lambda mf: -len(re.sub(r"\{[^}]+\}", "", mf[0].path)))
        for method, found in literal_first:
            if method.http_method == http_method:
                return method, found.groupdict(), ""
        allowed = ", ".join(sorted({m.http_method for m, _ in on_path}))
        return None, {}, f"{http_method} not allowed on this path (allowed: {allowed})"

    def check_query(self, method: ApiMethod, query: dict[str, list[str]]) -> list[str]:
        problems = []
        known = {**self.document["parameters"], **method.parameters}
        for name, spec in method.parameters.items():
            if spec.get("location") == "query" and spec.get("required") and name not in query:
                problems.append(f"required query parameter {name} is missing")
        for name, values in query.items():
            spec = known.get(name)
            if spec is None or spec.get("location") != "query":
                problems.append(f"query parameter {name} is not a parameter of {method.id}")
                continue
            problems += [p for v in values for p in _value_problems(name, spec, v)]
        return problems

    def check_path_values(self, method: ApiMethod, values: dict[str, str]) -> list[str]:
        return [
            p
            for name, value in values.items()
            for p in _value_problems(name, method.parameters.get(name, {}), value)
        ]

    def body_problems(self, ref: str, body: Any, at: str) -> list[str]:
        schema = {"$ref": f"#/definitions/{ref}", "definitions": self.definitions}
        validator = jsonschema.Draft7Validator(schema)
        return [
            f"{at}.{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        ]


def _value_problems(name: str, spec: dict[str, Any], value: str) -> list[str]:
    if not value and spec.get("location") == "path":
        return [f"path parameter {name} is empty"]
    kind = spec.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return [f"{name}={value!r} is not an integer"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"{name}={value!r} is not a boolean"]
    if spec.get("format") in FORMATS and not re.fullmatch(FORMATS[spec["format"]], value):
        return [f"{name}={value!r} is not {spec['format']}"]
    if spec.get("enum") and value not in spec["enum"]:
        return [f"{name}={value!r} is not one of {spec['enum']}"]
    return []


def _template_regex(path: str, parameters: dict[str, Any]) -> re.Pattern[str]:
    """``{name}`` is one segment; ``{+name}`` (reserved expansion) follows the parameter's
    own ``pattern`` (e.g. ``^projects/[^/]+/backups/[^/]+$``), else anything."""

    def group(name: str) -> str:
        if name.startswith("+"):
            own = parameters.get(name[1:], {}).get("pattern", "^.+$")
            return f"(?P<{name[1:]}>{own.removeprefix('^').removesuffix('$')})"
        return f"(?P<{name}>[^/]+)"

    parts = re.split(r"\{([^}]+)\}", path)  # odd indexes are the placeholders' names
    return re.compile("".join(group(p) if i % 2 else re.escape(p) for i, p in enumerate(parts)))


def _methods(resources: dict[str, Any]) -> list[ApiMethod]:
    found = []
    for resource in resources.values():
        for m in resource.get("methods", {}).values():
            found.append(
                ApiMethod(
                    id=m["id"],
                    http_method=m["httpMethod"],
                    path=m["path"],
                    pattern=_template_regex(m["path"], m.get("parameters", {})),
                    parameters=m.get("parameters", {}),
                    request_ref=(m.get("request") or {}).get("$ref"),
                    response_ref=(m.get("response") or {}).get("$ref"),
                )
            )
        found += _methods(resource.get("resources", {}))
    return found


def to_json_schema(node: Any) -> Any:
    """One discovery schema node as JSON Schema (see the module docstring)."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": f"#/definitions/{node['$ref']}"}
    out: dict[str, Any] = {}
    kind = node.get("type")
    if kind and kind != "any":
        out["type"] = kind
    if node.get("format") in FORMATS and kind == "string":
        out["pattern"] = FORMATS[node["format"]]
    if "enum" in node:
        out["enum"] = node["enum"]
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    if "properties" in node:
        props = node["properties"]
        out["properties"] = {k: to_json_schema(v) for k, v in props.items()}
        required = [
            k for k, v in props.items() if str(v.get("description", "")).startswith("Required.")
        ]
        if required:
            out["required"] = required
    if "additionalProperties" in node:
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    elif kind == "object" and "properties" in node:
        out["additionalProperties"] = False
    return out


@functools.cache
def load_contract() -> Contract:
    if not spec_available():
        raise FileNotFoundError(missing_spec_reason())
    document = json.loads(SPEC_PATH.read_text())
    definitions = {name: to_json_schema(s) for name, s in document["schemas"].items()}
    return Contract(document, tuple(_methods(document["resources"])), definitions)
