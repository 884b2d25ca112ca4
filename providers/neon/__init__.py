"""Neon: branch-based rollback through the Neon API v2 (``client.NeonClient``)."""
