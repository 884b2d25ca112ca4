"""Drizzle ORM migrations: the journal, the tracking table, and reverse drafts."""
