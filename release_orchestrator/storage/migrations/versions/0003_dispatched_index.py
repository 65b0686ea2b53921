"""index of dispatched releases: admission finds them without scanning the queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 05:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DISPATCHED_SQL = "status = 'queued' AND dispatched_at IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_releases_dispatched",
        "releases",
        ["environment_id", "status", "dispatched_at"],
        unique=False,
        sqlite_where=sa.text(DISPATCHED_SQL),
        postgresql_where=sa.text(DISPATCHED_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_releases_dispatched", table_name="releases")
