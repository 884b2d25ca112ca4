"""The durable inbox, issued view tokens, installation secrets, refused-request counts; idempotency keys remember
their incident; steps remember when they were queued; incidents are found by thread.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.Integer, index=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("accepted_at", TS, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("lease_until", TS),
        sa.Column("finished_at", TS),
        sa.Column("outcome", sa.Text),
    )
    op.create_table(
        "issued_tokens",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "installation_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "refused_request_counts",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("minute", TS, primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer))
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("queued_at", TS))
    op.create_index("ix_incidents_chat_thread", "incidents", ["chat_thread"])


def downgrade() -> None:
    op.drop_index("ix_incidents_chat_thread", "incidents")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("queued_at")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("incident_id")
    for table in ("refused_request_counts", "installation_secrets", "issued_tokens", "inbox"):
        op.drop_table(table)
