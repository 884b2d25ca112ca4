"""The head every provider test's rollbot.toml starts with: SQLite state, the audit log, the
OS user mapped to alice and bob, both approvers. Format with ``state`` and ``os_user``."""

TEAM_HEAD = """
database_url = "sqlite:///{state}"
audit_log = "audit.log"

[cli.identities]
{os_user} = ["alice", "bob"]

[approvals]
users = ["alice", "bob"]
"""
