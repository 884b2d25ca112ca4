"""The Neon API v2 client against a fake Neon that checks every exchange against the real spec.

Each request the client sends, and each canned answer the fake gives, is validated
with openapi-core against ``../shared/specs/neon-openapi.json`` (Neon's published
document), so a wrong path, parameter name or body shape fails here rather than
against the real service. Without that file the contract checks are skipped, with
the reason shown, and the behaviour tests still run.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from bot.redact import redact
from providers.neon.client import Branch, NeonClient, NeonError, Operation

SPEC_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "neon-openapi.json"
API_URL = "https://console.neon.tech/api/v2"  # the spec's server, so its paths match
API_KEY = "napi_testkey_0123456789abcdefghijklmnopqrstuvwxyz"
PROJECT = "shiny-wind-028834"
PROJECT_PATH = f"/api/v2/projects/{PROJECT}"
T0 = "2026-12-01T09:00:00Z"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


# -- the contract: openapi-core over httpx ----------------------------------------------------


class _OpenAPIRequest:
    """An httpx.Request seen through openapi-core's ``Request`` protocol."""

    def __init__(self, request: httpx.Request) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        url = request.url
        self.host_url = f"{url.scheme}://{url.netloc.decode()}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        query = parse_qs(url.query.decode(), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )


class _OpenAPIResponse:
    """An httpx.Response seen through openapi-core's ``Response`` protocol."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = dict(response.headers)
        self.data = response.content or None


class Contract:
    """Validates exchanges against the Neon spec; remembers which operations it saw."""

    def __init__(self, spec: dict) -> None:
        from openapi_core import Config, OpenAPI

        # The spec is Neon's own, converted mechanically; checking the document itself
        # would add a second to every run and test nothing of rollbot's.
        self.openapi = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        self.seen: set[tuple[str, str]] = set()

    def check(self, request: httpx.Request, response: httpx.Response, *, spec_body: bool) -> None:
        wrapped = _OpenAPIRequest(request)
        self.openapi.validate_request(wrapped)
        if spec_body:
            self.openapi.validate_response(wrapped, _OpenAPIResponse(response))
        self.seen.add((request.method, request.url.path))


def _load_contract() -> Contract | None:
    if not SPEC_PATH.is_file():
        return None
    return Contract(json.loads(SPEC_PATH.read_text()))


_CONTRACT = _load_contract()


def require_contract() -> Contract:
    if _CONTRACT is None:
        pytest.skip(f"../shared/specs/neon-openapi.json not found: {SPEC_PATH} is absent")
    return _CONTRACT


# -- the fake Neon ------------------------------------------------------------------------------


class FakeNeon:
    """Answers requests in order from a script; records them and checks each against the spec.

    An answer is a response, an exception to raise (a connection error) or a callable.
    Set ``raw`` on a response (``_raw(resp)``) when its body is deliberately not the
    spec's shape, e.g. an HTML error page from a proxy.
    """

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            if _CONTRACT is not None:
                _CONTRACT.openapi.validate_request(_OpenAPIRequest(request))
            raise answer
        response = answer(request) if callable(answer) else answer
        if _CONTRACT is not None:
            _CONTRACT.check(request, response, spec_body=not response.extensions.get("raw"))
        return response

    def client(self, **kwargs: Any) -> NeonClient:
        kwargs.setdefault("sleep", self.sleeps.append)
        return NeonClient(API_URL, API_KEY, PROJECT, transport=httpx.MockTransport(self), **kwargs)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def ok(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """The spec's GeneralError."""
    return httpx.Response(status, json={"code": "", "message": message}, headers=headers)


def _raw(response: httpx.Response) -> httpx.Response:
    response.extensions["raw"] = True
    return response


def branch_json(branch_id: str = "br-aged-salad-637688", name: str = "main", **extra: Any) -> dict:
    """A Branch with every field the spec requires, plus ``extra``."""
    return {
        "id": branch_id,
        "project_id": PROJECT,
        "name": name,
        "current_state": "ready",
        "state_changed_at": T0,
        "creation_source": "console",
        "created_at": T0,
        "updated_at": T0,
        "default": False,
        "protected": False,
        "cpu_used_sec": 0,
        "active_time_seconds": 0,
        "compute_time_seconds": 0,
        "written_data_bytes": 0,
        "data_transfer_bytes": 0,
        "init_source": "parent-data",
        **extra,
    }


def one_branch(branch: dict) -> httpx.Response:
    """getProjectBranch's answer: the branch and its annotation."""
    annotation = {"object": {"type": "console/branch", "id": branch["id"]}, "value": {}}
    return ok({"branch": branch, "annotation": annotation})


def operation_json(
    status: str = "running", action: str = "create_branch", op_id: str | None = None, **extra: Any
) -> dict:
    return {
        "id": op_id or str(uuid.uuid4()),
        "project_id": PROJECT,
        "branch_id": "br-sweet-breeze-497520",
        "action": action,
        "status": status,
        "failures_count": 0,
        "created_at": T0,
        "updated_at": T0,
        "total_duration_ms": 10,
        **extra,
    }


def endpoint_json(branch_id: str) -> dict:
    return {
        "host": "ep-silent-smoke-806639.us-east-2.aws.neon.tech",
        "id": "ep-silent-smoke-806639",
        "project_id": PROJECT,
        "branch_id": branch_id,
        "autoscaling_limit_min_cu": 0.25,
        "autoscaling_limit_max_cu": 1,
        "region_id": "aws-us-east-2",
        "type": "read_write",
        "current_state": "init",
        "settings": {"pg_settings": {}},
        "pooler_enabled": False,
        "pooler_mode": "transaction",
        "disabled": False,
        "passwordless_access": True,
        "creation_source": "console",
        "created_at": T0,
        "updated_at": T0,
        "proxy_host": "us-east-2.aws.neon.tech",
        "suspend_timeout_seconds": 0,
        "provisioner": "k8s-neonvm",
    }


def created_branch_json(branch: dict, operations: list[dict]) -> dict:
    """The spec's CreatedBranch response."""
    return {
        "branch": branch,
        "endpoints": [endpoint_json(branch["id"])],
        "operations": operations,
        "roles": [
            {"branch_id": branch["id"], "name": "neondb_owner", "created_at": T0, "updated_at": T0}
        ],
        "databases": [
            {
                "id": 1,
                "branch_id": branch["id"],
                "name": "neondb",
                "owner_name": "neondb_owner",
                "created_at": T0,
                "updated_at": T0,
            }
        ],
    }


def project_json(retention: int = 86400) -> dict:
    return {
        "project": {
            "id": PROJECT,
            "platform_id": "aws",
            "region_id": "aws-us-east-2",
            "name": "shop",
            "provisioner": "k8s-neonvm",
            "pg_version": 17,
            "history_retention_seconds": retention,
            "created_at": T0,
            "updated_at": T0,
            "proxy_host": "us-east-2.aws.neon.tech",
            "branch_logical_size_limit": 0,
            "branch_logical_size_limit_bytes": 0,
            "cpu_used_sec": 0,
            "owner_id": "owner-1",
            "creation_source": "console",
            "store_passwords": True,
            "data_storage_bytes_hour": 0,
            "data_transfer_bytes": 0,
            "written_data_bytes": 0,
            "compute_time_seconds": 0,
            "active_time_seconds": 0,
            "consumption_period_start": T0,
            "consumption_period_end": T0,
        }
    }


def body(request: httpx.Request) -> dict:
    return json.loads(request.content)


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


# -- the contract, once over every call -----------------------------------------------------------


def test_every_call_matches_the_spec() -> None:
    """Each method's request (and a real-shaped answer) passes openapi-core validation."""
    contract = require_contract()
    contract.seen.clear()
    op = operation_json("finished")
    fake = FakeNeon(
        ok(project_json()),
        ok({"branches": [branch_json()], "annotations": {}, "pagination": {}}),
        one_branch(branch_json()),
        ok(created_branch_json(branch_json("br-new-1", "restore-point"), [op]), status=201),
        ok({"branch": branch_json("br-new-1"), "operations": [op]}),
        ok({"branch": branch_json("br-new-1", default=True), "operations": []}),
        ok({"branch": branch_json(), "operations": [op]}),
        ok({"diff": "--- a\n+++ b\n"}),
        ok({"uri": "postgresql://neondb_owner:pw-secret-1@ep-x.neon.tech/neondb"}),
        ok({"operation": op}),
    )
    at = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    with fake.client() as neon:
        neon.history_retention()
        neon.list_branches()
        neon.get_branch("br-aged-salad-637688")
        neon.create_branch("br-aged-salad-637688", "restore-point", parent_timestamp=at)
        neon.delete_branch("br-new-1")
        neon.set_as_default("br-new-1")
        neon.restore_branch(
            "br-aged-salad-637688",
            "br-aged-salad-637688",
            source_timestamp=at,
            preserve_under_name="main-before-rollback",
        )
        neon.compare_schema(
            "br-new-1",
            db_name="neondb",
            base_branch_id="br-aged-salad-637688",
            timestamp=at,
            base_timestamp=at,
        )
        neon.connection_uri("br-new-1", database_name="neondb", role_name="neondb_owner")
        neon.operation(op["id"])
    assert len(contract.seen) == 10


def test_a_wrong_request_fails_the_contract() -> None:
    """The checker itself bites: a missing required parameter, or no API key, is refused."""
    from openapi_core.validation.request.exceptions import (
        MissingRequiredParameter,
        SecurityValidationError,
    )

    contract = require_contract()
    url = f"{API_URL}/projects/{PROJECT}/connection_uri"
    no_database = httpx.Request(
        "GET", url, params={"branch_id": "br-x"}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with pytest.raises(MissingRequiredParameter, match="database_name"):
        contract.openapi.validate_request(_OpenAPIRequest(no_database))
    no_key = httpx.Request("GET", f"{API_URL}/projects/{PROJECT}")
    with pytest.raises(SecurityValidationError):
        contract.openapi.validate_request(_OpenAPIRequest(no_key))


# -- requests -------------------------------------------------------------------------------------------


def test_headers_carry_the_key_as_bearer_and_ask_for_json() -> None:
    fake = FakeNeon(one_branch(branch_json()))
    with fake.client() as neon:
        neon.get_branch("br-aged-salad-637688")
    assert fake.last.headers["Authorization"] == f"Bearer {API_KEY}"
    assert fake.last.headers["Accept"] == "application/json"
    assert fake.last.url.path == f"{PROJECT_PATH}/branches/br-aged-salad-637688"


def test_branch_fields_are_parsed_and_extra_fields_ignored() -> None:
    data = branch_json(
        "br-sweet-breeze-497520",
        "dev",
        parent_id="br-aged-salad-637688",
        parent_lsn="0/1DE2850",
        parent_timestamp="2026-12-01T08:00:00Z",
        default=True,
        protected=True,
        something_new={"x": 1},
    )
    fake = FakeNeon(one_branch(data))
    with fake.client() as neon:
        branch = neon.get_branch("br-sweet-breeze-497520")
    assert branch == Branch(
        id="br-sweet-breeze-497520",
        name="dev",
        parent_id="br-aged-salad-637688",
        parent_timestamp=datetime(2026, 12, 1, 8, tzinfo=UTC),
        parent_lsn="0/1DE2850",
        created_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
        default=True,
        protected=True,
        current_state="ready",
    )


def test_list_branches_follows_the_cursor_to_the_end() -> None:
    page1 = [branch_json("br-a", "main"), branch_json("br-b", "dev")]
    page2 = [branch_json("br-c", "staging")]
    fake = FakeNeon(
        ok({"branches": page1, "annotations": {}, "pagination": {"next": "cur-1"}}),
        ok({"branches": page2, "annotations": {}, "pagination": {"next": "cur-2"}}),
        ok({"branches": [], "annotations": {}, "pagination": {"next": "cur-3"}}),
    )
    with fake.client() as neon:
        branches = neon.list_branches()
    assert [b.id for b in branches] == ["br-a", "br-b", "br-c"]
    cursors = [query(r).get("cursor") for r in fake.requests]
    assert cursors == [None, "cur-1", "cur-2"]


def test_list_branches_stops_when_there_is_no_next_cursor() -> None:
    fake = FakeNeon(ok({"branches": [branch_json()], "annotations": {}}))
    with fake.client() as neon:
        assert len(neon.list_branches()) == 1
    assert len(fake.requests) == 1


def test_find_branch_by_id_or_exact_name() -> None:
    listing = {
        "branches": [branch_json("br-a", "main"), branch_json("br-b", "dev")],
        "annotations": {},
    }
    fake = FakeNeon(ok(listing), ok(listing))
    with fake.client() as neon:
        assert neon.find_branch("br-b").name == "dev"
        assert neon.find_branch("main").id == "br-a"


def test_find_branch_missing_names_a_few_branches() -> None:
    names = [f"feature-{i}" for i in range(8)]
    listing = {
        "branches": [branch_json(f"br-{i}", n) for i, n in enumerate(names)],
        "annotations": {},
    }
    fake = FakeNeon(ok(listing))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.find_branch("mian")
    message = str(caught.value)
    assert message.startswith("no branch named 'mian'")
    assert "feature-0" in message and "feature-4" in message and "feature-7" not in message
    assert "and 3 more" in message


def test_history_retention() -> None:
    fake = FakeNeon(ok(project_json(retention=604800)))
    with fake.client() as neon:
        assert neon.history_retention() == timedelta(days=7)
    assert fake.last.url.path == PROJECT_PATH


def test_create_branch_asks_for_a_read_write_endpoint_at_a_utc_timestamp() -> None:
    op = operation_json("running")
    fake = FakeNeon(ok(created_branch_json(branch_json("br-new-1", "rp"), [op]), status=201))
    at = datetime(2026, 12, 2, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with fake.client() as neon:
        branch, operations = neon.create_branch("br-aged-salad-637688", "rp", parent_timestamp=at)
    assert body(fake.last) == {
        "branch": {
            "parent_id": "br-aged-salad-637688",
            "name": "rp",
            "parent_timestamp": "2026-12-02T10:30:00Z",
        },
        "endpoints": [{"type": "read_write"}],
    }
    assert branch.id == "br-new-1"
    assert operations == [Operation.from_api(op)]


def test_naive_timestamps_are_refused_before_any_request() -> None:
    fake = FakeNeon()
    with fake.client() as neon:
        with pytest.raises(ValueError, match="time zone"):
            neon.create_branch("br-a", "rp", parent_timestamp=datetime(2026, 12, 2, 10, 30))
        with pytest.raises(ValueError, match="time zone"):
            neon.compare_schema("br-a", db_name="neondb", timestamp=datetime(2026, 12, 2))
    assert fake.requests == []


def test_set_as_default_uses_its_own_path() -> None:
    fake = FakeNeon(ok({"branch": branch_json("br-new-1", default=True), "operations": []}))
    with fake.client() as neon:
        branch, operations = neon.set_as_default("br-new-1")
    assert fake.last.method == "POST"
    assert fake.last.url.path == f"{PROJECT_PATH}/branches/br-new-1/set_as_default"
    assert branch.default and operations == []


@pytest.mark.parametrize("source_timestamp", [None, datetime(2026, 12, 2, 10, 30, tzinfo=UTC)])
def test_restore_body_always_preserves_the_old_state(source_timestamp: datetime | None) -> None:
    fake = FakeNeon(ok({"branch": branch_json(), "operations": [operation_json()]}))
    with fake.client() as neon:
        neon.restore_branch(
            "br-a",
            "br-b",
            source_timestamp=source_timestamp,
            preserve_under_name="main-before-rollback",
        )
    assert fake.last.url.path == f"{PROJECT_PATH}/branches/br-a/restore"
    expected = {"source_branch_id": "br-b", "preserve_under_name": "main-before-rollback"}
    if source_timestamp is not None:
        expected["source_timestamp"] = "2026-12-02T10:30:00Z"
    assert body(fake.last) == expected


def test_restore_refuses_an_empty_preserve_name() -> None:
    fake = FakeNeon()
    with fake.client() as neon, pytest.raises(ValueError, match="preserve_under_name"):
        neon.restore_branch("br-a", "br-a", source_timestamp=None, preserve_under_name=" ")
    assert fake.requests == []


@pytest.mark.parametrize("gone", [httpx.Response(204), error(404, "branch not found")])
def test_delete_of_a_branch_already_gone_is_no_work(gone: httpx.Response) -> None:
    fake = FakeNeon(gone)
    with fake.client() as neon:
        assert neon.delete_branch("br-old") == []


def test_compare_schema_sends_the_spec_parameters() -> None:
    fake = FakeNeon(ok({"diff": "+CREATE TABLE t ();"}))
    at = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    with fake.client() as neon:
        diff = neon.compare_schema(
            "br-a", db_name="neondb", base_branch_id="br-b", base_timestamp=at
        )
    assert diff == "+CREATE TABLE t ();"
    assert query(fake.last) == {
        "db_name": "neondb",
        "base_branch_id": "br-b",
        "base_timestamp": "2026-12-02T10:30:00Z",
    }


def test_connection_uri_password_becomes_a_secret() -> None:
    uri = "postgresql://neondb_owner:npg_Very5ecretPw@ep-x-pooler.neon.tech/neondb?sslmode=require"
    fake = FakeNeon(ok({"uri": uri}))
    with fake.client() as neon:
        assert (
            neon.connection_uri(
                "br-a", database_name="neondb", role_name="neondb_owner", pooled=True
            )
            == uri
        )
    assert query(fake.last) == {
        "branch_id": "br-a",
        "database_name": "neondb",
        "role_name": "neondb_owner",
        "pooled": "true",
    }
    assert "npg_Very5ecretPw" not in redact("password was npg_Very5ecretPw")


# -- retries ------------------------------------------------------------------------------------------------


def test_locked_423_is_retried_then_succeeds() -> None:
    fake = FakeNeon(
        error(423, "project already has running operations"),
        ok({"branch": branch_json(default=True), "operations": []}),
    )
    with fake.client() as neon:
        branch, _ = neon.set_as_default("br-aged-salad-637688")
    assert branch.default
    assert len(fake.requests) == 2
    assert len(fake.sleeps) == 1 and 0.5 <= fake.sleeps[0] <= 1.5  # 0.5 s + up to 1 s jitter


def test_429_waits_as_long_as_retry_after_says() -> None:
    fake = FakeNeon(
        error(429, "rate limit exceeded", headers={"Retry-After": "7"}),
        one_branch(branch_json()),
    )
    with fake.client() as neon:
        neon.get_branch("br-aged-salad-637688")
    assert fake.sleeps == [7.0]


def test_503_is_retried_even_for_a_mutation() -> None:
    op = operation_json()
    fake = FakeNeon(
        error(503, "service unavailable"),
        error(503, "service unavailable"),
        ok({"branch": branch_json(), "operations": [op]}),
    )
    with fake.client() as neon:
        _, operations = neon.restore_branch(
            "br-a", "br-b", source_timestamp=None, preserve_under_name="keep"
        )
    assert [o.id for o in operations] == [op["id"]]
    assert len(fake.requests) == 3 and len(fake.sleeps) == 2
    # Exponential from 0.5 s, each with up to 1 s of jitter: 0.5-1.5 s, then 1-2 s.
    assert 0.5 <= fake.sleeps[0] <= 1.5 and 1 <= fake.sleeps[1] <= 2


def test_retries_stop_within_the_wait_budget() -> None:
    fake = FakeNeon(*[lambda _: error(423, "project already has running operations")] * 50)
    with fake.client(max_wait_seconds=20) as neon, pytest.raises(NeonError) as caught:
        neon.set_as_default("br-a")
    assert caught.value.status == 423 and caught.value.retryable
    assert "HTTP 423, POST /projects/" in str(caught.value)
    assert 0 < sum(fake.sleeps) <= 20
    assert len(fake.requests) == len(fake.sleeps) + 1


def test_retry_after_longer_than_the_budget_gives_up_at_once() -> None:
    fake = FakeNeon(error(429, "slow down", headers={"Retry-After": "3600"}))
    with fake.client(max_wait_seconds=60) as neon, pytest.raises(NeonError) as caught:
        neon.get_branch("br-a")
    assert caught.value.status == 429 and fake.sleeps == []


def test_connection_errors_are_retried_for_gets() -> None:
    fake = FakeNeon(httpx.ConnectError("connection refused"), one_branch(branch_json()))
    with fake.client() as neon:
        neon.get_branch("br-aged-salad-637688")
    assert len(fake.requests) == 2 and len(fake.sleeps) == 1


def test_connection_errors_are_not_retried_for_mutations() -> None:
    fake = FakeNeon(httpx.ReadTimeout("timed out"))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.create_branch("br-a", "rp")
    assert len(fake.requests) == 1 and fake.sleeps == []
    assert "may or may not have been made" in str(caught.value)
    assert caught.value.status is None and not caught.value.retryable


def test_500_on_a_mutation_is_not_retried() -> None:
    fake = FakeNeon(error(500, "internal error"))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.delete_branch("br-a")
    assert (
        str(caught.value)
        == f"Neon API: internal error (HTTP 500, DELETE /projects/{PROJECT}/branches/br-a)"
    )
    assert len(fake.requests) == 1


# -- errors ----------------------------------------------------------------------------------------------------


def test_404_is_not_retried_and_says_what_neon_said() -> None:
    fake = FakeNeon(error(404, "branch not found"))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.get_branch("br-x")
    assert (
        str(caught.value)
        == f"Neon API: branch not found (HTTP 404, GET /projects/{PROJECT}/branches/br-x)"
    )
    assert caught.value.status == 404 and not caught.value.retryable
    assert len(fake.requests) == 1 and fake.sleeps == []


def test_400_is_not_retried() -> None:
    fake = FakeNeon(error(400, "parent_timestamp is outside the history retention\nwindow"))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.create_branch("br-a", "rp", parent_timestamp=datetime(2020, 1, 1, tzinfo=UTC))
    assert str(caught.value) == (
        "Neon API: parent_timestamp is outside the history retention window "
        f"(HTTP 400, POST /projects/{PROJECT}/branches)"
    )
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_says_where_to_look(status: int) -> None:
    fake = FakeNeon(error(status, "authorization failed"))
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.list_branches()
    assert str(caught.value) == (
        f"Neon API key rejected (HTTP {status}): check the key in the environment variable "
        "the config names"
    )


def test_a_non_json_error_page_is_handled() -> None:
    page = _raw(
        httpx.Response(
            502, text="<html><body>Bad Gateway</body></html>", headers={"content-type": "text/html"}
        )
    )
    fake = FakeNeon(page)
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.set_as_default("br-a")
    assert (
        str(caught.value)
        == f"Neon API: Bad Gateway (HTTP 502, POST /projects/{PROJECT}/branches/br-a/set_as_default)"
    )


def test_the_api_key_never_reaches_an_error_or_a_log(debug_logs: pytest.LogCaptureFixture) -> None:
    """Whatever goes wrong (even a server echoing the key), no text shows the key."""
    echo = f"token {API_KEY} is not valid for this project"
    cases: list[tuple[Answer, Callable[[NeonClient], object]]] = [
        (error(401, echo), lambda n: n.get_branch("br-a")),
        (error(404, echo), lambda n: n.get_branch("br-a")),
        (error(409, echo), lambda n: n.create_branch("br-a", "rp")),
        (_raw(httpx.Response(500, text=f"oops {API_KEY}")), lambda n: n.delete_branch("br-a")),
        (httpx.ConnectError(f"refused {API_KEY}"), lambda n: n.create_branch("br-a", "rp")),
        (
            ok({"operation": operation_json("failed", error=echo)}),
            lambda n: n.wait([Operation.from_api(operation_json("running"))]),
        ),
    ]
    texts: list[str] = []
    for answer, call in cases:
        fake = FakeNeon(answer)
        with fake.client(max_wait_seconds=0) as neon:
            texts.append(repr(neon))
            with pytest.raises(NeonError) as caught:
                call(neon)
        texts += [str(caught.value), repr(caught.value)]
        texts.append("".join(traceback.format_exception(caught.value)))
    texts += [r.getMessage() for r in debug_logs.records]
    texts += [repr(r.args) for r in debug_logs.records]
    assert any("Neon API" in r.getMessage() for r in debug_logs.records)
    leaks = [t for t in texts if API_KEY in t]
    assert leaks == []


def test_each_request_is_logged_without_headers(debug_logs: pytest.LogCaptureFixture) -> None:
    fake = FakeNeon(one_branch(branch_json()))
    with fake.client() as neon:
        neon.get_branch("br-a")
    lines = [r.getMessage() for r in debug_logs.records if r.name == "providers.neon.client"]
    assert lines == [f"Neon API GET /projects/{PROJECT}/branches/br-a -> 200"]


# -- waiting on operations ------------------------------------------------------------------------------


def test_wait_polls_until_finished_and_reports_progress() -> None:
    op_id = str(uuid.uuid4())
    fake = FakeNeon(
        ok({"operation": operation_json("running", op_id=op_id)}),
        ok({"operation": operation_json("finished", op_id=op_id)}),
    )
    progress: list[str] = []
    already = Operation.from_api(operation_json("finished", action="start_compute"))
    with fake.client() as neon:
        final = neon.wait(
            [Operation.from_api(operation_json("scheduling", op_id=op_id)), already],
            on_progress=progress.append,
            poll_seconds=2,
        )
    assert [o.status for o in final] == ["finished", "finished"]
    assert final[0].done and not final[0].failed
    assert progress == ["create_branch: scheduling (0 s)", "create_branch: running (2 s)"]
    assert fake.sleeps == [2, 2]
    assert [r.url.path for r in fake.requests] == [f"{PROJECT_PATH}/operations/{op_id}"] * 2


def test_wait_on_a_failed_operation_names_it() -> None:
    op_id = str(uuid.uuid4())
    fake = FakeNeon(
        ok(
            {
                "operation": operation_json(
                    "error", action="create_timeline", op_id=op_id, error="timeline creation failed"
                )
            }
        )
    )
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.wait(
            [Operation.from_api(operation_json("running", action="create_timeline", op_id=op_id))]
        )
    assert (
        str(caught.value)
        == f"Neon operation create_timeline ({op_id}) error: timeline creation failed"
    )


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_failed_and_cancelled_are_terminal(status: str) -> None:
    op = Operation.from_api(operation_json(status))
    assert op.failed and not op.done
    with FakeNeon().client() as neon, pytest.raises(NeonError, match=status):
        neon.wait([op])


def test_skipped_counts_as_done_and_cancelling_keeps_waiting() -> None:
    assert Operation.from_api(operation_json("skipped")).done
    cancelling = Operation.from_api(operation_json("cancelling"))
    assert not cancelling.done and not cancelling.failed


def test_wait_times_out() -> None:
    op = operation_json("running")
    fake = FakeNeon(*[lambda _: ok({"operation": op})] * 10)
    with fake.client() as neon, pytest.raises(NeonError) as caught:
        neon.wait([Operation.from_api(op)], poll_seconds=1, timeout_seconds=3)
    assert (
        str(caught.value)
        == f"Neon operations not finished after 3 s: create_branch ({op['id']}) running"
    )
    assert fake.sleeps == [1, 1, 1]
