"""After a restore: does the database hold what the snapshot's manifest says it held?

The manifest's fingerprint (``providers/postgres/fingerprint.py``) was taken inside the
snapshot pg_dump dumped; the restored database is fingerprinted the same way (same
per-table method, ``like=``) and compared: table contents, sequences, object names,
the database ACL. A snapshot from before fingerprints (older rollbot, or a bare
runbook dump) cannot be deep-verified; the report says so instead of passing quietly.
"""

from __future__ import annotations

from providers.postgres.conn import connect
from providers.postgres.fingerprint import FingerprintReport, compare_fingerprints, take_fingerprint
from providers.postgres.snapshot import get_snapshot
from providers.storage import BackupStorage


def deep_verify(url: str, storage: BackupStorage, snapshot: str) -> FingerprintReport:
    """Compare the database at ``url`` with snapshot ``snapshot``'s recorded fingerprint."""
    expected = (get_snapshot(storage, snapshot).manifest or {}).get("fingerprint")
    if not expected:
        return FingerprintReport(
            ok=True,
            checked=[f"nothing deep: snapshot {snapshot} has no fingerprint in its manifest"],
        )
    with connect(url, autocommit=True) as conn:
        actual = take_fingerprint(conn, like=expected)
    return compare_fingerprints(expected, actual)
