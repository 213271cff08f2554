"""Where an agent console discusses a handoff (e.g. the Slack message and its thread).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("console_channel", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("console_thread", sa.String(length=100), nullable=True))
        batch_op.create_index(
            "ix_handoffs_console_thread", ["console_channel", "console_thread"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_console_thread")
        batch_op.drop_column("console_thread")
        batch_op.drop_column("console_channel")
