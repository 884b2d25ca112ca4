"""A local fake of the Neon API v2 that holds every request and response to Neon's spec.

Branches are real databases on a throwaway PostgreSQL cluster. Use::

    with NeonApiServer(pg_cluster) as neon:
        httpx.get(f"{neon.url}/projects/{neon.project_id}/branches", headers=neon.headers)
"""

from tests.neon_api.contract import SPEC_PATH, missing_spec_reason, spec_available
from tests.neon_api.resources import BranchRecord, Checkpoint, OperationRecord
from tests.neon_api.server import NeonApiServer, RecordedRequest, Violation

__all__ = [
    "SPEC_PATH",
    "BranchRecord",
    "Checkpoint",
    "NeonApiServer",
    "OperationRecord",
    "RecordedRequest",
    "Violation",
    "missing_spec_reason",
    "spec_available",
]
