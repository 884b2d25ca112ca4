"""The app around a rollback: app-deployment rollback by webhook, and the repoint."""
