"""drop ix_steps_release_id: UNIQUE (release_id, seq) already serves lookups by release

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:10:00

Every claim inserts a step, and each index of ``steps`` is one more B-tree page written (and
read back) per release. The unique constraint's index has ``release_id`` as its leading
column, so queries by release (a release's steps, the cascade of a release's deletion) use
it; the separate index on ``release_id`` alone only cost writes.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_steps_release_id", table_name="steps")


def downgrade() -> None:
    op.create_index("ix_steps_release_id", "steps", ["release_id"], unique=False)
