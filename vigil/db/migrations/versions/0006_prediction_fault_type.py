# ruff: noqa: E501
"""Predictions: the likely fault type and what the prediction rests on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fault_type', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('basis', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.create_check_constraint(batch_op.f('ck_predictions_fault_type_length'), 'length(fault_type) <= 128')


def downgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_predictions_fault_type_length'), type_='check')
        batch_op.drop_column('basis')
        batch_op.drop_column('fault_type')
