"""The Cloud SQL API fake itself: it must refuse what Google's discovery document refuses,
answer only what the document allows, and move operations PENDING -> RUNNING -> DONE."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.cloudsql_api import CloudSqlApiServer, missing_spec_reason, spec_available

if not spec_available():
    pytest.skip(missing_spec_reason(), allow_module_level=True)

from tests.cloudsql_api.contract import load_contract, to_json_schema

BASE = "v1/projects/rollbot-test"


@pytest.fixture
def api() -> Iterator[CloudSqlApiServer]:
    with CloudSqlApiServer(project="rollbot-test") as server:
        server.add_instance("prod-db")
        yield server


def call(api: CloudSqlApiServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, api.url + path, timeout=10, **kw)


def clone_body(name: str = "prod-db-restored-1", when: datetime | None = None) -> dict:
    moment = when or datetime.now(UTC) - timedelta(hours=1)
    return {
        "cloneContext": {
            "destinationInstanceName": name,
            "pointInTime": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
    }


def test_a_clone_without_its_required_destination_is_a_contract_violation(
    api: CloudSqlApiServer,
) -> None:
    body = {"cloneContext": {"pointInTime": "2026-12-01T10:00:00Z"}}
    answer = call(api, "POST", f"{BASE}/instances/prod-db/clone", json=body)
    assert answer.status_code == 400
    (violation,) = api.take_violations()
    assert "'destinationInstanceName' is a required property" in violation.detail
    assert api.operations() == []  # nothing was started


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"cloneContext": {"destinationInstanceName": "x", "pointInTime": "yesterday"}}, "match"),
        ({"cloneContext": {"destinationInstanceName": "x", "pitr": True}}, "'pitr' was unexpected"),
        ({"cloneContext": {"destinationInstanceName": 7}}, "is not of type 'string'"),
    ],
)
def test_a_body_off_the_schema_is_refused(api: CloudSqlApiServer, body: dict, problem: str) -> None:
    answer = call(api, "POST", f"{BASE}/instances/prod-db/clone", json=body)
    assert answer.status_code == 400
    assert problem in " ".join(v.detail for v in api.take_violations())


@pytest.mark.parametrize(
    ("method", "path", "status", "problem"),
    [
        ("GET", f"{BASE}/instances/prod-db/clones", 404, "path not in the discovery document"),
        ("PUT", f"{BASE}/operations/x", 405, "PUT not allowed on this path"),
        ("GET", f"{BASE}/instances/prod-db/backupRuns?limit=5", 400, "not a parameter"),
        ("GET", f"{BASE}/instances/prod-db/backupRuns?maxResults=many", 400, "not an integer"),
    ],
)
def test_paths_methods_and_query_parameters_are_the_documents(
    api: CloudSqlApiServer, method: str, path: str, status: int, problem: str
) -> None:
    assert call(api, method, path).status_code == status
    assert problem in " ".join(v.detail for v in api.take_violations())


def test_operations_go_pending_running_done_and_one_ends_done_with_an_error(
    api: CloudSqlApiServer,
) -> None:
    started = call(api, "POST", f"{BASE}/instances/prod-db/clone", json=clone_body())
    assert started.status_code == 200 and started.json()["status"] == "PENDING"
    name = started.json()["name"]
    seen = [call(api, "GET", f"{BASE}/operations/{name}").json()["status"] for _ in range(4)]
    assert seen == ["PENDING", "RUNNING", "DONE", "DONE"]
    assert api.instance("prod-db-restored-1") is not None  # the effect lands at DONE

    api.fail_next_operation("Clone failed: not enough quota.", code="QUOTA_EXCEEDED")
    failing = call(api, "POST", f"{BASE}/instances/prod-db/clone", json=clone_body("other"))
    name = failing.json()["name"]
    for _ in range(3):
        final = call(api, "GET", f"{BASE}/operations/{name}").json()
    assert final["status"] == "DONE"
    assert final["error"]["errors"] == [
        {
            "kind": "sql#operationError",
            "code": "QUOTA_EXCEEDED",
            "message": "Clone failed: not enough quota.",
        }
    ]
    assert api.instance("other") is None
    api.assert_no_violations()


def test_google_refusals_have_googles_error_shape(api: CloudSqlApiServer) -> None:
    missing = call(api, "GET", f"{BASE}/instances/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "The Cloud SQL instance does not exist."
    api.add_instance("taken")
    taken = call(api, "POST", f"{BASE}/instances/prod-db/clone", json=clone_body("taken"))
    assert taken.status_code == 409
    old = call(
        api,
        "POST",
        f"{BASE}/instances/prod-db/clone",
        json=clone_body("x", datetime.now(UTC) - timedelta(days=9)),
    )
    assert old.status_code == 400 and "outside the recovery window" in old.text
    other = call(api, "GET", "v1/projects/someone-else/instances/prod-db")
    assert other.status_code == 403
    api.assert_no_violations()


def test_a_response_off_the_schema_is_recorded_as_the_fakes_bug(api: CloudSqlApiServer) -> None:
    api.instance("prod-db").state = "HALF_ASLEEP"  # type: ignore[union-attr]
    call(api, "GET", f"{BASE}/instances/prod-db")
    (violation,) = api.take_violations()
    assert violation.kind == "response" and "'HALF_ASLEEP' is not one of" in violation.detail


def test_leaving_the_server_with_violations_fails_the_test() -> None:
    with (
        pytest.raises(AssertionError, match="1 contract violation"),
        CloudSqlApiServer() as server,
    ):
        call(server, "DELETE", "v1/nowhere")


def test_backup_runs_are_listed_newest_first_across_pages(api: CloudSqlApiServer) -> None:
    now = datetime.now(UTC)
    made = [api.add_backup("prod-db", started=now - timedelta(hours=h)) for h in (9, 1, 5)]
    first = call(api, "GET", f"{BASE}/instances/prod-db/backupRuns").json()
    assert [r["id"] for r in first["items"]] == [made[1].id, made[2].id]
    rest = call(
        api, "GET", f"{BASE}/instances/prod-db/backupRuns?pageToken={first['nextPageToken']}"
    ).json()
    assert [r["id"] for r in rest["items"]] == [made[0].id] and "nextPageToken" not in rest
    api.assert_no_violations()


def test_the_discovery_schemas_become_strict_json_schema() -> None:
    contract = load_contract()
    assert to_json_schema({"type": "string", "format": "int64"})["pattern"] == r"^-?\d+$"
    clone = contract.definitions["CloneContext"]
    assert clone["required"] == ["destinationInstanceName"]  # "Required." in its description
    assert clone["additionalProperties"] is False
    assert contract.definitions["InstancesCloneRequest"]["properties"]["cloneContext"] == {
        "$ref": "#/definitions/CloneContext"
    }
    assert contract.body_problems("BackupRun", {"id": "12x"}, "body")  # int64 is digits
