"""Devices: the Unique Device Identifier, for the FHIR export.

The length CHECK the model base adds is written out by hand: Alembic does not
compare CHECK constraints.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('udi', sa.String(length=255), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_devices_udi_length'),
                                         'length(udi) <= 255')


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_devices_udi_length'), type_='check')
        batch_op.drop_column('udi')
