"""The trainer workbench: trainer accounts, inbox decisions, model promotions, and two
indexes for its Insights page.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workbench_users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=80), nullable=False, unique=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inbox_reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "message_id",
            sa.Integer(),
            sa.ForeignKey("interaction_messages.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("intent", sa.String(length=100), nullable=True),
        sa.Column("example", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("previous_model", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("golden", sa.JSON(), nullable=True),
        sa.Column("data_commit", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_index(
        "ix_messages_insights",
        "interaction_messages",
        ["interaction_id", "direction", "event_ts", "intent"],
    )
    op.create_index("ix_interactions_contact_started", "interactions", ["contact_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_interactions_contact_started", table_name="interactions")
    op.drop_index("ix_messages_insights", table_name="interaction_messages")
    op.drop_table("model_promotions")
    op.drop_table("inbox_reviews")
    op.drop_table("workbench_users")
