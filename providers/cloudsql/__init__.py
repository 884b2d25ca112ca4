"""Google Cloud SQL for PostgreSQL (backups and point-in-time restore via the Admin API)."""
