"""PagerDuty: pages on-call and the CTO through the Events API v2, and says who is on call."""
