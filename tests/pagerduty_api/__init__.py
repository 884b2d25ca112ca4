"""A local HTTPS fake of PagerDuty (Events API v2 and REST ``/oncalls``), held to its specs."""

from tests.pagerduty_api.contract import missing_spec_reason, spec_available
from tests.pagerduty_api.server import Alert, OnCall, PagerDutyApiServer, RecordedEvent, Violation

__all__ = [
    "Alert",
    "OnCall",
    "PagerDutyApiServer",
    "RecordedEvent",
    "Violation",
    "missing_spec_reason",
    "spec_available",
]
