"""moto's server for the RDS tests: started on 127.0.0.1 by the tests, stopped after them.

rollbot talks to it through a small pass-through recorder on another port: every request
goes to moto unchanged and its ``Action`` is recorded, so a test can count the restore calls
any process made (a restarted rollbot included). While ``hold`` is set, the recorder answers
describe calls with the restored copies still ``creating`` (moto makes every instance
``available`` at once, where AWS takes minutes), so a test can kill rollbot mid-wait.

Import the fixtures into a test module (``from tests.rds_support import moto_rds``).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest

from providers.postgres.cluster import free_port
from tests.waiting import wait_until

REGION = "us-east-1"
ACCESS_KEY = "AKIAROLLBOTTEST0001"
SECRET_KEY = "rds-test-secret-9d2f4e7a1c"  # must never reach a message, log or audit line
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
}
RESTORED_IN_FLIGHT = re.compile(
    r"(<DBInstanceIdentifier>[^<]*-restored-[^<]*</DBInstanceIdentifier>.*?)"
    r"<DBInstanceStatus>available</DBInstanceStatus>",
    re.S,
)


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_POST(self) -> None:  # the RDS API is query protocol: every call is a POST
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = (parse_qs(body.decode()).get("Action") or ["?"])[0]
        self.server.actions.append(action)
        status, headers, answer = self.server.forward(self.path, body, dict(self.headers))
        if self.server.hold and action == "DescribeDBInstances":
            answer = RESTORED_IN_FLIGHT.sub(
                r"\1<DBInstanceStatus>creating</DBInstanceStatus>", answer.decode()
            ).encode()
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "server",
                "date",
            ):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: Any) -> None:
        return


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, moto_port: int) -> None:
        super().__init__(("127.0.0.1", port), _Recorder)
        self.moto_port = moto_port
        self.actions: list[str] = []
        self.hold = False

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        try:
            conn.request("POST", path, body, headers)
            reply = conn.getresponse()
            return reply.status, reply.getheaders(), reply.read()
        finally:
            conn.close()


class MotoRds:
    """moto's server (all of AWS that moto has) and the recorder rollbot is pointed at."""

    def __init__(self) -> None:
        self.moto_port, self.port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.recorder = _RecordingServer(self.port, self.moto_port)

    @property
    def url(self) -> str:
        """What rollbot's ``endpoint_url`` names."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoRds:
        uv = shutil.which("uv")
        assert uv, "uv is needed to start moto_server"
        self.proc = subprocess.Popen(
            [uv, "run", "moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, "moto_server to answer")
        threading.Thread(target=self.recorder.serve_forever, daemon=True).start()
        return self

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "moto_server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.moto_port}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.recorder.shutdown()
        self.recorder.server_close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def reset(self) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.moto_port}/moto-api/reset", method="POST"
        )
        urllib.request.urlopen(req, timeout=10).close()
        self.recorder.actions.clear()
        self.recorder.hold = False

    # ----------------------------------------------------------- for tests
    def client(self, service: str = "rds") -> Any:
        """A client straight to moto (not recorded): the tests' own set-up and checks."""
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def actions(self, name: str | None = None) -> list[str]:
        return [a for a in self.recorder.actions if name is None or a == name]

    def mutations(self) -> list[str]:
        return [a for a in self.recorder.actions if not a.startswith("Describe")]

    def hold(self, on: bool = True) -> None:
        self.recorder.hold = on

    def instance_ids(self) -> list[str]:
        described = self.client().describe_db_instances()["DBInstances"]
        return sorted(i["DBInstanceIdentifier"] for i in described)

    def instance(self, instance_id: str) -> dict[str, Any]:
        return self.client().describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][
            0
        ]

    def network(self) -> tuple[str, str]:
        """A VPC subnet group and a security group, as a real instance has."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.8.{n}.0/24", AvailabilityZone=f"{REGION}{z}"
            )["Subnet"]["SubnetId"]
            for n, z in ((1, "a"), (2, "b"))
        ]
        group = ec2.create_security_group(GroupName="orders-db", Description="db", VpcId=vpc)
        self.client().create_db_subnet_group(
            DBSubnetGroupName="orders-private", DBSubnetGroupDescription="db", SubnetIds=subnets
        )
        return "orders-private", group["GroupId"]

    def make_instance(self, instance_id: str = "orders-prod", **overrides: Any) -> datetime:
        """A PostgreSQL instance with backups on; its creation time back."""
        subnet_group, security_group = self.network()
        self.client().create_db_parameter_group(
            DBParameterGroupName="orders-pg16", DBParameterGroupFamily="postgres16", Description="p"
        )
        params = {
            "DBInstanceIdentifier": instance_id,
            "Engine": "postgres",
            "DBInstanceClass": "db.r6g.large",
            "MasterUsername": "orders",
            "MasterUserPassword": "moto-master-pw-1",
            "AllocatedStorage": 200,
            "BackupRetentionPeriod": 7,
            "MultiAZ": True,
            "DBSubnetGroupName": subnet_group,
            "VpcSecurityGroupIds": [security_group],
            "DBParameterGroupName": "orders-pg16",
            "Tags": [{"Key": "team", "Value": "orders"}],
            **overrides,
        }
        created = self.client().create_db_instance(**params)["DBInstance"]
        return _utc(created.get("InstanceCreateTime")) or datetime.now(UTC)

    def make_cluster(self, cluster_id: str = "orders-aurora") -> datetime:
        """An Aurora PostgreSQL cluster with its writer; its creation time back."""
        rds = self.client()
        cluster = rds.create_db_cluster(
            DBClusterIdentifier=cluster_id,
            Engine="aurora-postgresql",
            MasterUsername="orders",
            MasterUserPassword="moto-master-pw-1",
            BackupRetentionPeriod=7,
            Tags=[{"Key": "team", "Value": "orders"}],
        )["DBCluster"]
        rds.create_db_instance(
            DBInstanceIdentifier=f"{cluster_id}-writer",
            DBClusterIdentifier=cluster_id,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.xlarge",
        )
        return _utc(cluster.get("ClusterCreateTime")) or datetime.now(UTC)


def isolated_aws(folder: Path) -> dict[str, str]:
    """Environment that keeps boto3 away from this machine's AWS files and metadata."""
    return {
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoRds]:
    server = MotoRds().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_rds(
    moto_server: MotoRds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[MotoRds]:
    """A clean moto (reset before each test) and AWS credentials for it in the environment;
    nothing of the machine's own AWS set-up (profiles, files, instance metadata) applies."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_ENV, **isolated_aws(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    yield moto_server
    moto_server.hold(False)
