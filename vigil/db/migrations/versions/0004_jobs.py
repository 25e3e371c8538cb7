# ruff: noqa: E501
"""Scheduled jobs: leases, streaming-scoring state, anomaly alarms and the model registry.

The CHECK constraints the model base adds (enumerated values, text lengths)
are written out with each new table: Alembic does not compare them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_leases',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('runs', sa.BigInteger(), nullable=False),
    sa.Column('last_done_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(job) <= 64', name=op.f('ck_job_leases_job_length')),
    sa.CheckConstraint('length(key) <= 128', name=op.f('ck_job_leases_key_length')),
    sa.CheckConstraint('length(owner) <= 128', name=op.f('ck_job_leases_owner_length')),
    sa.PrimaryKeyConstraint('job', 'key', name=op.f('pk_job_leases'))
    )
    with op.batch_alter_table('job_leases', schema=None) as batch_op:
        batch_op.create_index('ix_job_leases_job_due_at', ['job', 'due_at'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=128), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('higher_is_better', sa.Boolean(), nullable=False),
    sa.Column('data_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('data_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=9), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('candidate', 'promoted', 'rejected', 'retired')", name=op.f('ck_model_versions_status_valid')),
    sa.CheckConstraint('length(kind) <= 128', name=op.f('ck_model_versions_kind_length')),
    sa.CheckConstraint('length(name) <= 128', name=op.f('ck_model_versions_name_length')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_model_versions_name_version'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index('uq_model_versions_promoted_name', ['name'], unique=True, sqlite_where=sa.text("status = 'promoted'"), postgresql_where=sa.text("status = 'promoted'"))

    op.create_table('stream_states',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('step_s', sa.Integer(), nullable=False),
    sa.Column('watermark_ms', sa.BigInteger(), nullable=True),
    sa.Column('states', sa.LargeBinary(), nullable=True),
    sa.Column('baseline_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('scored_steps', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_stream_states_device_id_length')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_stream_states_device_id_devices')),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_stream_states'))
    )
    op.create_table('anomaly_alarms',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_anomaly_alarms_device_id_length')),
    sa.CheckConstraint('length(metric) <= 64', name=op.f('ck_anomaly_alarms_metric_length')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_anomaly_alarms_device_id_devices')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_anomaly_alarms_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anomaly_alarms')),
    sa.UniqueConstraint('device_id', 'metric', 'ts', name=op.f('uq_anomaly_alarms_device_id_metric_ts'))
    )
    with op.batch_alter_table('anomaly_alarms', schema=None) as batch_op:
        batch_op.create_index('ix_anomaly_alarms_device_id_ts', ['device_id', 'ts'], unique=False)
        batch_op.create_index('ix_anomaly_alarms_unhandled', ['detected_at'], unique=False, sqlite_where=sa.text('handled_at IS NULL'), postgresql_where=sa.text('handled_at IS NULL'))



def downgrade() -> None:
    with op.batch_alter_table('anomaly_alarms', schema=None) as batch_op:
        batch_op.drop_index('ix_anomaly_alarms_unhandled', sqlite_where=sa.text('handled_at IS NULL'), postgresql_where=sa.text('handled_at IS NULL'))
        batch_op.drop_index('ix_anomaly_alarms_device_id_ts')

    op.drop_table('anomaly_alarms')
    op.drop_table('stream_states')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_model_versions_promoted_name', sqlite_where=sa.text("status = 'promoted'"), postgresql_where=sa.text("status = 'promoted'"))

    op.drop_table('model_versions')
    with op.batch_alter_table('job_leases', schema=None) as batch_op:
        batch_op.drop_index('ix_job_leases_job_due_at')

    op.drop_table('job_leases')
