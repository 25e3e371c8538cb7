# ruff: noqa: E501
"""Devices: an index on (last_seen, id) for the health list's order and cursor.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_devices_last_seen_id', 'devices', ['last_seen', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_devices_last_seen_id', table_name='devices')
