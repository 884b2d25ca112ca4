"""Real point-in-time restore for self-hosted PostgreSQL with pgBackRest (WAL archive + backups)."""
