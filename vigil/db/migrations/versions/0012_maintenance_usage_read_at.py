# ruff: noqa: E501
"""Maintenance dues: when the usage counter they count from was read.

A device whose counter at its last work is unknown counts from its first reading; the rate of
use must be counted from that reading's time, not the work's. Rows before this revision keep
an empty time: their rate is counted from the work, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('maintenance_dues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_usage_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('maintenance_dues', schema=None) as batch_op:
        batch_op.drop_column('last_usage_at')
