# ruff: noqa: E501
"""Service desk, part 2: maintenance due dates and records, surveys, the knowledge base, vouchers.

Alembic does not compare CHECK constraints, so the ones the models add for
columns added to existing tables are written out here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


PLAN_CHECKS = {
    "lead_days_not_negative": "lead_days >= 0",
    "grace_days_not_negative": "grace_days >= 0",
    "procedure_length": "length(procedure) <= 4000",
}


def upgrade() -> None:
    op.create_table('maintenance_dues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('last_done_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_usage_hours', sa.Float(), nullable=True),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_usage_hours', sa.Float(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_maintenance_dues_device_id_length')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_maintenance_dues_device_id_devices')),
    sa.ForeignKeyConstraint(['plan_id'], ['maintenance_plans.id'], name=op.f('fk_maintenance_dues_plan_id_maintenance_plans')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_maintenance_dues_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_dues')),
    sa.UniqueConstraint('plan_id', 'device_id', name=op.f('uq_maintenance_dues_plan_id_device_id'))
    )
    with op.batch_alter_table('maintenance_dues', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_dues_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_dues_next_due_at'), ['next_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_dues_plan_id'), ['plan_id'], unique=False)

    op.create_table('maintenance_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=11), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('performed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('performed_by', sa.String(length=128), nullable=False),
    sa.Column('engineer_user_id', sa.Integer(), nullable=True),
    sa.Column('usage_hours', sa.Float(), nullable=True),
    sa.Column('results', sa.String(length=4000), nullable=False),
    sa.Column('measurements', sa.JSON(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('corrective_ticket_id', sa.Integer(), nullable=True),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('preventive', 'calibration')", name=op.f('ck_maintenance_records_kind_valid')),
    sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_maintenance_records_device_id_length')),
    sa.CheckConstraint('length(performed_by) <= 128', name=op.f('ck_maintenance_records_performed_by_length')),
    sa.CheckConstraint('length(results) <= 4000', name=op.f('ck_maintenance_records_results_length')),
    sa.ForeignKeyConstraint(['corrective_ticket_id'], ['tickets.id'], name=op.f('fk_maintenance_records_corrective_ticket_id_tickets')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_maintenance_records_device_id_devices')),
    sa.ForeignKeyConstraint(['engineer_user_id'], ['users.id'], name=op.f('fk_maintenance_records_engineer_user_id_users')),
    sa.ForeignKeyConstraint(['plan_id'], ['maintenance_plans.id'], name=op.f('fk_maintenance_records_plan_id_maintenance_plans')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_maintenance_records_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_records'))
    )
    with op.batch_alter_table('maintenance_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_records_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_records_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_records_performed_at'), ['performed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_records_plan_id'), ['plan_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_records_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('maintenance_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_days', sa.Integer(), nullable=False, server_default='14'))
        batch_op.add_column(sa.Column('grace_days', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('procedure', sa.String(length=4000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('tolerances', sa.JSON(), nullable=False, server_default='{}'))
        for name, condition in PLAN_CHECKS.items():
            batch_op.create_check_constraint(batch_op.f(f'ck_maintenance_plans_{name}'), condition)

    op.create_table('satisfaction_surveys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(token_hash) <= 64', name=op.f('ck_satisfaction_surveys_token_hash_length')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_satisfaction_surveys_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_satisfaction_surveys')),
    sa.UniqueConstraint('ticket_id', name=op.f('uq_satisfaction_surveys_ticket_id')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_satisfaction_surveys_token_hash'))
    )

    # Nullable columns: a plain ADD COLUMN, no rebuild of the tickets table on SQLite.
    for name in ('respond_minutes', 'diagnose_minutes', 'restore_minutes'):
        op.add_column('tickets', sa.Column(name, sa.Float(), nullable=True))

    op.create_table('knowledge_article_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('symptoms', sa.String(length=10000), nullable=False),
    sa.Column('cause', sa.String(length=10000), nullable=False),
    sa.Column('fix', sa.String(length=50000), nullable=False),
    sa.Column('device_models', sa.JSON(), nullable=False),
    sa.Column('fault_codes', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('author', sa.String(length=128), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(author) <= 128', name=op.f('ck_knowledge_article_versions_author_length')),
    sa.CheckConstraint('length(cause) <= 10000', name=op.f('ck_knowledge_article_versions_cause_length')),
    sa.CheckConstraint('length(fix) <= 50000', name=op.f('ck_knowledge_article_versions_fix_length')),
    sa.CheckConstraint('length(note) <= 1000', name=op.f('ck_knowledge_article_versions_note_length')),
    sa.CheckConstraint('length(symptoms) <= 10000', name=op.f('ck_knowledge_article_versions_symptoms_length')),
    sa.CheckConstraint('length(title) <= 200', name=op.f('ck_knowledge_article_versions_title_length')),
    sa.ForeignKeyConstraint(['article_id'], ['knowledge_articles.id'], name=op.f('fk_knowledge_article_versions_article_id_knowledge_articles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_article_versions')),
    sa.UniqueConstraint('article_id', 'version', name=op.f('uq_knowledge_article_versions_article_id_version'))
    )
    with op.batch_alter_table('knowledge_article_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_knowledge_article_versions_article_id'), ['article_id'], unique=False)

    op.create_table('ticket_articles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=128), nullable=False),
    sa.Column('helpful', sa.Boolean(), nullable=True),
    sa.Column('feedback_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(linked_by) <= 128', name=op.f('ck_ticket_articles_linked_by_length')),
    sa.ForeignKeyConstraint(['article_id'], ['knowledge_articles.id'], name=op.f('fk_ticket_articles_article_id_knowledge_articles')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_articles_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_articles')),
    sa.UniqueConstraint('ticket_id', 'article_id', name=op.f('uq_ticket_articles_ticket_id_article_id'))
    )
    with op.batch_alter_table('ticket_articles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_articles_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_articles_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('knowledge_articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=9), nullable=False, server_default='published'))
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('helpful_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('not_helpful_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('source_ticket_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_knowledge_articles_source_ticket_id_tickets'), 'tickets', ['source_ticket_id'], ['id'])
        batch_op.create_check_constraint(batch_op.f('ck_knowledge_articles_status_valid'), "status IN ('draft', 'published', 'retired')")

    op.create_table('service_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by', sa.String(length=128), nullable=False),
    sa.Column('html', sa.String(length=500000), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.CheckConstraint('length(digest) <= 64', name=op.f('ck_service_reports_digest_length')),
    sa.CheckConstraint('length(html) <= 500000', name=op.f('ck_service_reports_html_length')),
    sa.CheckConstraint('length(issued_by) <= 128', name=op.f('ck_service_reports_issued_by_length')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_service_reports_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_reports')),
    sa.UniqueConstraint('ticket_id', 'version', name=op.f('uq_service_reports_ticket_id_version'))
    )
    with op.batch_alter_table('service_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_reports_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_parts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('part_number', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=128), nullable=False),
    sa.CheckConstraint('length(description) <= 200', name=op.f('ck_ticket_parts_description_length')),
    sa.CheckConstraint('length(part_number) <= 64', name=op.f('ck_ticket_parts_part_number_length')),
    sa.CheckConstraint('length(recorded_by) <= 128', name=op.f('ck_ticket_parts_recorded_by_length')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_ticket_parts_quantity_positive')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_parts_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_parts'))
    )
    with op.batch_alter_table('ticket_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_parts_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('udi', sa.String(length=255), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_devices_udi_length'), 'length(udi) <= 255')


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_devices_udi_length'), type_='check')
        batch_op.drop_column('udi')

    with op.batch_alter_table('ticket_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_parts_ticket_id'))

    op.drop_table('ticket_parts')
    with op.batch_alter_table('service_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_reports_ticket_id'))

    op.drop_table('service_reports')

    with op.batch_alter_table('knowledge_articles', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_knowledge_articles_status_valid'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_knowledge_articles_source_ticket_id_tickets'), type_='foreignkey')
        batch_op.drop_column('source_ticket_id')
        batch_op.drop_column('not_helpful_count')
        batch_op.drop_column('helpful_count')
        batch_op.drop_column('version')
        batch_op.drop_column('status')

    with op.batch_alter_table('ticket_articles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_articles_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_articles_article_id'))

    op.drop_table('ticket_articles')
    with op.batch_alter_table('knowledge_article_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_knowledge_article_versions_article_id'))

    op.drop_table('knowledge_article_versions')

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('restore_minutes')
        batch_op.drop_column('diagnose_minutes')
        batch_op.drop_column('respond_minutes')

    op.drop_table('satisfaction_surveys')

    with op.batch_alter_table('maintenance_plans', schema=None) as batch_op:
        for name in PLAN_CHECKS:
            batch_op.drop_constraint(batch_op.f(f'ck_maintenance_plans_{name}'), type_='check')
        batch_op.drop_column('tolerances')
        batch_op.drop_column('procedure')
        batch_op.drop_column('grace_days')
        batch_op.drop_column('lead_days')

    with op.batch_alter_table('maintenance_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_records_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_maintenance_records_plan_id'))
        batch_op.drop_index(batch_op.f('ix_maintenance_records_performed_at'))
        batch_op.drop_index(batch_op.f('ix_maintenance_records_due_at'))
        batch_op.drop_index(batch_op.f('ix_maintenance_records_device_id'))

    op.drop_table('maintenance_records')
    with op.batch_alter_table('maintenance_dues', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_dues_plan_id'))
        batch_op.drop_index(batch_op.f('ix_maintenance_dues_next_due_at'))
        batch_op.drop_index(batch_op.f('ix_maintenance_dues_device_id'))

    op.drop_table('maintenance_dues')
