"""The endpoints the fake models, one function per spec operation.

Each takes the project and the request as openapi-core unmarshalled it (parameters with
the spec's defaults filled in, timestamps as datetimes) and returns a ``Reply``.
"""

from __future__ import annotations

import base64
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.neon_api.project import ApiError, NeonProject, Reply
from tests.neon_api.resources import (
    BranchRecord,
    OperationRecord,
    annotation_json,
    branch_json,
    endpoint_json,
    iso,
    operation_json,
    project_json,
)


@dataclass
class Call:
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    database_name: str  # the logical database every branch reports
    page_size: int  # the page when ``limit`` is absent


Handler = Callable[[NeonProject, Call], Reply]


def _ops(p: NeonProject, ops: list[OperationRecord]) -> list[dict[str, Any]]:
    return [operation_json(op, p.project_id) for op in ops]


def _branch(p: NeonProject, call: Call) -> BranchRecord:
    p.check_project(call.path["project_id"])
    return p.branch(call.path["branch_id"])


def get_project(p: NeonProject, call: Call) -> Reply:
    p.check_project(call.path["project_id"])
    body = project_json(p.project_id, p.pg_version, p.retention, p.created_at)
    return Reply(200, {"project": body})


def get_branch(p: NeonProject, call: Call) -> Reply:
    b = _branch(p, call)
    return Reply(200, {"branch": branch_json(b, p.project_id), "annotation": annotation_json(b)})


def _sort_key(b: BranchRecord, sort_by: str) -> list[str]:
    value = b.name if sort_by == "name" else iso(getattr(b, sort_by))
    return [value, b.id]


def _decode_cursor(cursor: str) -> tuple[str, str, list[str]]:
    try:
        sort_by, order, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(sort_by), str(order), [str(k) for k in key]
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid pagination cursor") from exc


def list_branches(p: NeonProject, call: Call) -> Reply:
    """Keyset pagination by (sort field, id); ``pagination.next`` only while more remain."""
    p.check_project(call.path["project_id"])
    q = call.query
    sort_by, order, after = q["sort_by"], q["sort_order"], None
    if q.get("cursor"):
        sort_by, order, after = _decode_cursor(q["cursor"])
    rows = [b for b in p.branches.values() if q.get("search", "") in f"{b.name} {b.id}"]
    rows.sort(key=lambda b: _sort_key(b, sort_by), reverse=order == "desc")
    if after is not None:
        rows = [
            b
            for b in rows
            if (_sort_key(b, sort_by) < after if order == "desc" else _sort_key(b, sort_by) > after)
        ]
    limit = q.get("limit") or call.page_size
    page = rows[:limit]
    pagination: dict[str, str] = {"sort_by": sort_by, "sort_order": order}
    if len(rows) > limit:
        key = json.dumps([sort_by, order, _sort_key(page[-1], sort_by)])
        pagination["next"] = base64.urlsafe_b64encode(key.encode()).decode()
    body = {
        "branches": [branch_json(b, p.project_id) for b in page],
        "annotations": {b.id: annotation_json(b) for b in page if b.annotation},
        "pagination": pagination,
    }
    return Reply(200, body)


def _extras(p: NeonProject, b: BranchRecord, call: Call) -> dict[str, Any]:
    """The roles, databases and connection URIs a created branch reports."""
    c, made = p.cluster, iso(b.created_at)
    role = {"branch_id": b.id, "name": c.user, "protected": False}
    database = {"id": 1, "branch_id": b.id, "name": call.database_name, "owner_name": c.user}
    params = {"database": b.database, "password": c.password, "role": c.user}
    params |= {"host": "127.0.0.1", "pooler_host": "127.0.0.1"}
    uris = [{"connection_uri": c.url(b.database), "connection_parameters": params}]
    return {
        "roles": [role | {"created_at": made, "updated_at": made}],
        "databases": [database | {"created_at": made, "updated_at": made}],
        **({"connection_uris": uris} if b.endpoint_ids else {}),
    }


def create_branch(p: NeonProject, call: Call) -> Reply:
    p.check_project(call.path["project_id"])
    p.ensure_unlocked()
    body = call.body or {}
    spec = body.get("branch") or {}
    parent = p.branch(spec["parent_id"]) if "parent_id" in spec else p.default_branch()
    if spec.get("init_source", "parent-data") != "parent-data":
        raise ApiError(501, "the fake Neon API models only init_source parent-data")
    point = p.resolve(parent, spec.get("parent_timestamp"), spec.get("parent_lsn"))
    name = spec.get("name") or f"br-{p.rng.randrange(10**6):06d}"
    b = p.spawn(name, parent=parent, point=point, protected=spec.get("protected", False))
    b.annotation = dict(body.get("annotation_value") or {})
    endpoints = [p.add_endpoint(b, e["type"]) for e in body.get("endpoints", [])]
    ops = [p.new_operation(b.id, "create_timeline")]
    ops += [p.new_operation(b.id, "start_compute", e.id) for e in endpoints]
    out = {
        "branch": branch_json(b, p.project_id),
        "endpoints": [endpoint_json(e, p.project_id) for e in endpoints],
        "operations": _ops(p, ops),
        **_extras(p, b, call),
    }
    return Reply(201, out)


def delete_branch(p: NeonProject, call: Call) -> Reply:
    """204 for a branch that is not there, as the spec says; refusals are 422."""
    p.check_project(call.path["project_id"])
    p.ensure_unlocked()
    b = p.branches.get(call.path["branch_id"])
    if b is None:
        return Reply(204)
    refusals = (
        ("the project's default branch", b.default),
        ("a protected branch", b.protected),
        ("a branch that has child branches", bool(p.children(b.id))),
    )
    refusal = next((what for what, applies in refusals if applies), None)
    if refusal:
        raise ApiError(422, f"cannot delete {refusal} ({b.id})")
    ops = [p.new_operation(b.id, "suspend_compute", e) for e in b.endpoint_ids]
    ops.append(p.new_operation(b.id, "delete_timeline"))
    gone = branch_json(b, p.project_id)
    p.drop(b)
    return Reply(200, {"branch": gone, "operations": _ops(p, ops)})


def set_default(p: NeonProject, call: Call) -> Reply:
    """Neon answers ``operations: []`` here (the spec's example): nothing to wait for."""
    b = _branch(p, call)
    p.ensure_unlocked()
    p.set_default(b)
    return Reply(200, {"branch": branch_json(b, p.project_id), "operations": []})


def restore(p: NeonProject, call: Call) -> Reply:
    """The spec's rules: own history needs a point and a preserve name, so do children."""
    b = _branch(p, call)
    p.ensure_unlocked()
    body = call.body
    source = p.branch(body["source_branch_id"])
    at, lsn = body.get("source_timestamp"), body.get("source_lsn")
    keep = body.get("preserve_under_name") or None
    if source is b and at is None and lsn is None:
        raise ApiError(400, "restoring a branch from itself needs source_timestamp or source_lsn")
    if (source is b or p.children(b.id)) and not keep:
        why = "from its own history" if source is b else "with child branches"
        raise ApiError(400, f"restoring a branch {why} needs preserve_under_name")
    point = p.resolve(source, at, lsn)
    preserved = p.restore(b, point, keep)
    ops = [p.new_operation(b.id, "create_timeline")]
    if preserved is not None:
        ops.append(p.new_operation(preserved.id, "create_branch"))
    return Reply(200, {"branch": branch_json(b, p.project_id), "operations": _ops(p, ops)})


def compare_schema(p: NeonProject, call: Call) -> Reply:
    """A unified diff of ``pg_dump --schema-only``: base (default: the parent) to branch."""
    b = _branch(p, call)
    q = call.query
    base_id = q.get("base_branch_id") or b.parent_id
    if base_id is None:
        raise ApiError(400, f"branch {b.id} has no parent: give base_branch_id")
    base = p.branch(base_id)
    base_point = p.resolve(base, q.get("base_timestamp"), q.get("base_lsn"))
    point = p.resolve(b, q.get("timestamp"), q.get("lsn"))
    before = p.db.dump_schema(base_point.database).splitlines(keepends=True)
    after = p.db.dump_schema(point.database).splitlines(keepends=True)
    db = q["db_name"]
    diff = difflib.unified_diff(before, after, f"{base.id}/{db}", f"{b.id}/{db}")
    return Reply(200, {"diff": "".join(diff)})


def connection_uri(p: NeonProject, call: Call) -> Reply:
    """The branch's physical database; database_name and role_name are only validated."""
    p.check_project(call.path["project_id"])
    q = call.query
    b = p.branch(q["branch_id"]) if q.get("branch_id") else p.default_branch()
    endpoint = q.get("endpoint_id")
    if endpoint is not None and endpoint not in b.endpoint_ids:
        raise ApiError(404, f"endpoint {endpoint} not found on branch {b.id}")
    return Reply(200, {"uri": p.cluster.url(b.database)})


def get_operation(p: NeonProject, call: Call) -> Reply:
    p.check_project(call.path["project_id"])
    op = p.operations.get(str(call.path["operation_id"]))
    if op is None:
        raise ApiError(404, f"operation {call.path['operation_id']} not found")
    op.poll(p.now())
    return Reply(200, {"operation": operation_json(op, p.project_id)})


BRANCH = "/projects/{project_id}/branches/{branch_id}"
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/projects/{project_id}"): get_project,
    ("GET", "/projects/{project_id}/branches"): list_branches,
    ("POST", "/projects/{project_id}/branches"): create_branch,
    ("GET", BRANCH): get_branch,
    ("DELETE", BRANCH): delete_branch,
    ("POST", f"{BRANCH}/set_as_default"): set_default,
    ("POST", f"{BRANCH}/restore"): restore,
    ("GET", f"{BRANCH}/compare_schema"): compare_schema,
    ("GET", "/projects/{project_id}/connection_uri"): connection_uri,
    ("GET", "/projects/{project_id}/operations/{operation_id}"): get_operation,
}
