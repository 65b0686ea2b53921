"""release claim key: the dispatcher reads one waiting release per distinct claim

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 05:30:00
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


WAITING_SQL = "status = 'queued' AND dispatched_at IS NULL"


def claim_key(release_type: str, targets: list[dict[str, Any]] | None) -> str:
    """As ``tables.claim_key`` at this revision (frozen here)."""
    if release_type != "selective":
        return "*"
    names = sorted({str(t["resource"]) for t in targets or ()})
    return hashlib.sha1("\n".join(names).encode("utf-8"), usedforsecurity=False).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_key", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_releases_waiting_claims",
        "releases",
        ["environment_id", "claim_key", "queue_seq"],
        unique=False,
        sqlite_where=sa.text(WAITING_SQL),
        postgresql_where=sa.text(WAITING_SQL),
    )
    # releases that may still be dispatched need their key (pending ones join the queue later)
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, type, targets FROM releases "
            "WHERE status IN ('queued', 'pending_approval')"
        )
    ).all()
    for release_id, release_type, targets in rows:
        if isinstance(targets, str):
            targets = json.loads(targets)
        conn.execute(
            sa.text("UPDATE releases SET claim_key = :key WHERE id = :id"),
            {"key": claim_key(release_type, targets), "id": release_id},
        )


def downgrade() -> None:
    op.drop_index("ix_releases_waiting_claims", table_name="releases")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("claim_key")
