"""An incident can follow up another one (an undo of its restore); a tick rollbot made
keeps its evidence.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("follows_id", sa.Integer, nullable=True))
    with op.batch_alter_table("checklist_ticks") as batch:
        batch.add_column(sa.Column("evidence", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checklist_ticks") as batch:
        batch.drop_column("evidence")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("follows_id")
