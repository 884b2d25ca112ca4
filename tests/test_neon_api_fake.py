"""The fake Neon API itself: spec-checked exchanges, and branches that are real databases.

Every test runs with a ``NeonApiServer`` whose exit fails the test when a request or a
response broke Neon's spec, so each good-path test also proves its responses valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from providers.postgres.cluster import ThrowawayCluster
from tests.neon_api import NeonApiServer, missing_spec_reason, spec_available
from tests.neon_api.api import ROUTES
from tests.neon_api.contract import load_contract, undocumented_fields
from tests.neon_api.project import Reply
from tests.neon_api.resources import format_lsn
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not spec_available(), reason=missing_spec_reason()),
]


@pytest.fixture
def neon(pg_cluster: ThrowawayCluster) -> Iterator[NeonApiServer]:
    with NeonApiServer(pg_cluster) as server:
        yield server


@pytest.fixture
def api(neon: NeonApiServer) -> Iterator[httpx.Client]:
    base = f"{neon.url}/projects/{neon.project_id}"
    with httpx.Client(base_url=base, headers=neon.headers, timeout=30) as client:
        yield client


def rows(url: str, table: str = "items") -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def insert(url: str, *ids: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY)")
        for i in ids:
            conn.execute("INSERT INTO items VALUES (%s)", (i,))


def database_exists(cluster: ThrowawayCluster, name: str) -> bool:
    with psycopg.connect(cluster.url()) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


def settle(api: httpx.Client, reply: dict[str, Any]) -> list[str]:
    """Poll every operation of a mutation's reply until it ends; their final statuses."""
    done: dict[str, str] = {}

    def all_ended() -> bool:
        for op in reply["operations"]:
            status = api.get(f"/operations/{op['id']}").json()["operation"]["status"]
            if status in ("finished", "failed"):
                done[op["id"]] = status
        return len(done) == len(reply["operations"])

    wait_until(all_ended, "the operations to end")
    return [done[op["id"]] for op in reply["operations"]]


def create(api: httpx.Client, parent_id: str, name: str, **branch: Any) -> dict[str, Any]:
    r = api.post("/branches", json={"branch": {"parent_id": parent_id, "name": name, **branch}})
    assert r.status_code == 201, r.text
    return r.json()


def test_missing_or_wrong_api_key_is_401(neon: NeonApiServer) -> None:
    url = f"{neon.url}/projects/{neon.project_id}/branches"
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401
        assert set(r.json()) >= {"code", "message"}
    assert [q.status for q in neon.requests] == [401, 401]


def test_created_branch_is_a_copy_of_its_parent(neon: NeonApiServer, api: httpx.Client) -> None:
    main = neon.default_branch()
    insert(neon.branch_url(main.id), 1)
    reply = create(api, main.id, "dev")
    assert settle(api, reply) == ["finished"]
    child = reply["branch"]
    assert child["parent_id"] == main.id and child["id"].startswith("br-")
    insert(neon.branch_url(main.id), 2)
    assert rows(neon.branch_url(child["id"])) == [1]
    uri = api.get(
        "/connection_uri",
        params={"branch_id": child["id"], "database_name": "neondb", "role_name": "postgres"},
    ).json()["uri"]
    assert rows(uri) == [1]
    assert rows(neon.branch_url(main.id)) == [1, 2]


def test_branch_at_a_past_time_copies_that_checkpoint(
    neon: NeonApiServer, api: httpx.Client
) -> None:
    main = neon.default_branch()
    insert(neon.branch_url(main.id), 1)
    point = neon.checkpoint(main.id)
    insert(neon.branch_url(main.id), 2)
    reply = create(api, main.id, "past", parent_timestamp=point.at.isoformat())
    settle(api, reply)
    assert rows(neon.branch_url(reply["branch"]["id"])) == [1]
    by_lsn = create(api, main.id, "by-lsn", parent_lsn=format_lsn(point.lsn))
    assert by_lsn["branch"]["parent_lsn"] == format_lsn(point.lsn)
    settle(api, by_lsn)
    assert rows(neon.branch_url(by_lsn["branch"]["id"])) == [1]
    assert rows(neon.branch_url(main.id)) == [1, 2]


def test_copying_a_branch_in_use_ends_its_sessions(pg_cluster: ThrowawayCluster) -> None:
    """CREATE DATABASE ... TEMPLATE needs the parent to itself: after a grace, sessions end."""
    with NeonApiServer(pg_cluster, template_grace_seconds=0.05) as neon:
        main = neon.default_branch()
        insert(neon.branch_url(main.id), 1)
        with psycopg.connect(neon.branch_url(main.id), autocommit=True) as session:
            r = httpx.post(
                f"{neon.url}/projects/{neon.project_id}/branches",
                headers=neon.headers,
                json={"branch": {"parent_id": main.id}},
            )
            assert r.status_code == 201, r.text
            with pytest.raises(psycopg.OperationalError):
                session.execute("SELECT 1")
        assert rows(neon.branch_url(r.json()["branch"]["id"])) == [1]


def test_operations_run_then_finish_and_lock_the_project(
    neon: NeonApiServer, api: httpx.Client
) -> None:
    main = neon.default_branch()
    reply = create(api, main.id, "first")
    op = reply["operations"][0]
    assert op["status"] == "running" and op["action"] == "create_timeline"
    locked = api.post("/branches", json={"branch": {"parent_id": main.id, "name": "second"}})
    assert locked.status_code == 423
    assert "running operations" in locked.json()["message"]
    assert len(neon.branches()) == 2
    seen = [api.get(f"/operations/{op['id']}").json()["operation"]["status"] for _ in range(3)]
    assert seen == ["running", "running", "finished"]
    neon.fail_next_operation("disk on fire")
    failing = create(api, main.id, "second")
    assert settle(api, failing) == ["failed"]
    final = api.get(f"/operations/{failing['operations'][0]['id']}").json()["operation"]
    assert final["error"] == "disk on fire" and final["failures_count"] == 1


def test_restore_keeps_the_old_state_under_a_new_name(
    neon: NeonApiServer, api: httpx.Client
) -> None:
    main = neon.default_branch()
    insert(neon.branch_url(main.id), 1)
    point = neon.checkpoint(main.id)
    insert(neon.branch_url(main.id), 2)
    body = {
        "source_branch_id": main.id,
        "source_timestamp": point.at.isoformat(),
        "preserve_under_name": "main_old",
    }
    r = api.post(f"/branches/{main.id}/restore", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["branch"]["id"] == main.id
    settle(api, r.json())
    assert rows(neon.branch_url(main.id)) == [1]
    old = neon.branch("main_old")
    assert old.id != main.id and rows(neon.branch_url(old.id)) == [1, 2]
    assert neon.default_branch().id == main.id


def test_restore_outside_the_history_is_400_and_changes_nothing(
    neon: NeonApiServer, api: httpx.Client
) -> None:
    main = neon.default_branch()
    insert(neon.branch_url(main.id), 1)
    dev = create(api, main.id, "dev")
    settle(api, dev)
    insert(neon.branch_url(main.id), 2)
    now = datetime.now(UTC)
    too_old = now - timedelta(seconds=neon.history_retention_seconds + 60)
    before_dev = datetime.fromisoformat(dev["branch"]["created_at"]) - timedelta(milliseconds=1)
    for at, why in ((too_old, "retention"), (now + timedelta(hours=1), "future"),
                    (before_dev, "before branch")):  # fmt: skip
        body = {"source_branch_id": dev["branch"]["id"], "source_timestamp": at.isoformat()}
        r = api.post(f"/branches/{main.id}/restore", json=body | {"preserve_under_name": "x"})
        assert r.status_code == 400 and why in r.json()["message"], r.text
    own = api.post(f"/branches/{main.id}/restore", json={"source_branch_id": main.id})
    assert own.status_code == 400 and "source_timestamp" in own.json()["message"]
    assert rows(neon.branch_url(main.id)) == [1, 2]
    assert sorted(b.name for b in neon.branches()) == ["dev", "main"]


def test_listing_needs_the_cursor(neon: NeonApiServer, api: httpx.Client) -> None:
    for name in ("b", "c", "a"):
        neon.add_branch(name)
    first = api.get("/branches", params={"sort_by": "name", "sort_order": "asc"}).json()
    assert [b["name"] for b in first["branches"]] == ["a", "b"]
    names, page = [], first
    while True:
        names += [b["name"] for b in page["branches"]]
        cursor = page["pagination"].get("next")
        if cursor is None:
            break
        page = api.get("/branches", params={"cursor": cursor}).json()
    assert names == ["a", "b", "c", "main"]
    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda _: api.get("/branches", params={"limit": 10}), range(16)))
    assert all(len(p.json()["branches"]) == 4 for p in pages)
    assert all("next" not in p.json()["pagination"] for p in pages)


def test_compare_schema_shows_an_added_column(neon: NeonApiServer, api: httpx.Client) -> None:
    main = neon.default_branch()
    insert(neon.branch_url(main.id), 1)
    dev = create(api, main.id, "dev")["branch"]
    with psycopg.connect(neon.branch_url(dev["id"]), autocommit=True) as conn:
        conn.execute("ALTER TABLE items ADD COLUMN note text")
    r = api.get(f"/branches/{dev['id']}/compare_schema", params={"db_name": "neondb"})
    assert r.status_code == 200, r.text
    added = [line for line in r.json()["diff"].splitlines() if line.startswith("+ ")]
    assert any("note text" in line for line in added), r.json()["diff"]
    then = api.get(
        f"/branches/{dev['id']}/compare_schema",
        params={"db_name": "neondb", "timestamp": dev["created_at"]},
    )
    assert then.json()["diff"] == ""


def test_delete_refuses_the_default_branch_and_drops_others(
    neon: NeonApiServer, api: httpx.Client
) -> None:
    main = neon.default_branch()
    refused = api.delete(f"/branches/{main.id}")
    assert refused.status_code == 422 and "default" in refused.json()["message"]
    dev = create(api, main.id, "dev")
    settle(api, dev)
    safe = neon.add_branch("safe", protected=True)
    assert api.delete(f"/branches/{safe.id}").status_code == 422
    database = neon.branch(dev["branch"]["id"]).database
    gone = api.delete(f"/branches/{dev['branch']['id']}")
    assert gone.status_code == 200
    assert [op["action"] for op in gone.json()["operations"]] == ["delete_timeline"]
    assert not database_exists(neon.cluster, database)
    settle(api, gone.json())
    assert api.delete(f"/branches/{dev['branch']['id']}").status_code == 204


def test_set_as_default_moves_the_default(neon: NeonApiServer, api: httpx.Client) -> None:
    other = neon.add_branch("other")
    r = api.post(f"/branches/{other.id}/set_as_default")
    assert r.status_code == 200 and r.json()["branch"]["default"] is True
    assert [b.name for b in neon.branches() if b.default] == ["other"]


def test_injected_faults_come_first(neon: NeonApiServer, api: httpx.Client) -> None:
    neon.fail_next("GET", r"/branches$", 429, message="slow down", retry_after=2)
    limited = api.get("/branches")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["message"] == "slow down"
    assert api.get("/branches").status_code == 200
    assert [q.status for q in neon.requests] == [429, 200]


def test_invalid_requests_are_400_and_recorded(neon: NeonApiServer, api: httpx.Client) -> None:
    r = api.post("/branches", json={"branch": {"name": 5}})
    assert r.status_code == 400 and "not of type 'string'" in r.json()["message"]
    assert api.get("/no-such-thing").status_code == 404
    taken = neon.take_violations()
    assert [(v.kind, v.status) for v in taken] == [("request", 400), ("request", 404)]
    assert neon.requests[0].body == {"branch": {"name": 5}}
    assert len(neon.branches()) == 1


def test_a_response_off_the_spec_is_recorded(
    neon: NeonApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = ("GET", "/projects/{project_id}")
    monkeypatch.setitem(ROUTES, route, lambda p, call: Reply(200, {"project": {"id": 7}}))
    project_url = f"{neon.url}/projects/{neon.project_id}"
    assert httpx.get(project_url, headers=neon.headers).status_code == 200
    [violation] = neon.take_violations()
    assert violation.kind == "response" and "required" in violation.detail


def test_paths_the_fake_does_not_model_say_so(neon: NeonApiServer, api: httpx.Client) -> None:
    main = neon.default_branch()
    r = api.get(f"/branches/{main.id}/endpoints")
    assert r.status_code == 501 and "does not model" in r.json()["message"]


def test_leaving_with_violations_fails(pg_cluster: ThrowawayCluster) -> None:
    with pytest.raises(AssertionError, match="contract violation"):  # noqa: SIM117
        with NeonApiServer(pg_cluster, main_branch=None) as server:
            httpx.get(f"{server.url}/projects/{server.project_id}", headers=server.headers)
            httpx.get(f"{server.url}/projects/NOT_VALID", headers=server.headers)


def test_undocumented_response_fields_are_reported() -> None:
    contract = load_contract()
    schema = {"$ref": "#/components/schemas/BranchResponse"}
    value = {"branch": {"id": "br-a", "name": "main", "invented": 1}}
    found = undocumented_fields(contract.spec, schema, value, "body")
    assert found == ["body.branch.invented is not in the spec"]
