"""A local fake of the Cloud SQL Admin API v1 that holds every request and response to
Google's discovery document. Use::

    with CloudSqlApiServer() as api:
        api.add_instance("prod-db")
        # point [environments.X.cloudsql] api_url at api.url, auth = "none"
"""

from tests.cloudsql_api.contract import SPEC_PATH, missing_spec_reason, spec_available
from tests.cloudsql_api.resources import FakeBackupRun, FakeInstance, FakeOperation
from tests.cloudsql_api.server import CloudSqlApiServer, RecordedRequest, Violation

__all__ = [
    "SPEC_PATH",
    "CloudSqlApiServer",
    "FakeBackupRun",
    "FakeInstance",
    "FakeOperation",
    "RecordedRequest",
    "Violation",
    "missing_spec_reason",
    "spec_available",
]
