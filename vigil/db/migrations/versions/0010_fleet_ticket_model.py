# ruff: noqa: E501
"""Tickets: the device model of a fleet ticket, and one open fleet ticket per model and signature.

A fleet ticket (one fault signature on many devices of one model across sites) has no
device and no site; the model it is about is its own column. The partial unique index
on open fleet tickets was on the signature alone, which would have let one model's defect
block another's with the same signature; it is now on (model, signature), as the site
index is on (site, signature), so two transactions opening the same fleet ticket at once
file one and the other joins it. No fleet ticket was ever filed before this revision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_FLEET = "scope = 'fleet' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model', sa.String(length=64), nullable=True))
        batch_op.drop_index('uq_tickets_open_fleet_signature', sqlite_where=sa.text(OPEN_FLEET), postgresql_where=sa.text(OPEN_FLEET))
        batch_op.create_index('uq_tickets_open_fleet_model_signature', ['model', 'signature'], unique=True, sqlite_where=sa.text(OPEN_FLEET), postgresql_where=sa.text(OPEN_FLEET))


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('uq_tickets_open_fleet_model_signature', sqlite_where=sa.text(OPEN_FLEET), postgresql_where=sa.text(OPEN_FLEET))
        batch_op.create_index('uq_tickets_open_fleet_signature', ['signature'], unique=True, sqlite_where=sa.text(OPEN_FLEET), postgresql_where=sa.text(OPEN_FLEET))
        batch_op.drop_column('model')
