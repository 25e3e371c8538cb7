# ruff: noqa: E501
"""Initial schema: registry, users, tickets, diagnosis, knowledge, maintenance, audit, ingest records.

Besides the tables, this creates what the models cannot express portably:
the triggers that make ``audit_log`` append-only on both databases, and the
four roles every installation has.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("admin", "manager", "engineer", "customer")

SQLITE_AUDIT_TRIGGERS = (
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END""",
)

# restrict_violation is an integrity error (SQLSTATE 23001), as SQLite's RAISE(ABORT) is.
POSTGRESQL_AUDIT_TRIGGERS = (
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$""",
    """CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
)


def upgrade() -> None:
    op.create_table('audit_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=128), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('object_type', sa.String(length=64), nullable=False),
        sa.Column('object_id', sa.String(length=128), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.CheckConstraint('length(action) <= 64', name=op.f('ck_audit_log_action_length')),
        sa.CheckConstraint('length(actor) <= 128', name=op.f('ck_audit_log_actor_length')),
        sa.CheckConstraint('length(object_id) <= 128', name=op.f('ck_audit_log_object_id_length')),
        sa.CheckConstraint('length(object_type) <= 64', name=op.f('ck_audit_log_object_type_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)
    op.create_index('ix_audit_log_object', 'audit_log', ['object_type', 'object_id'], unique=False)
    op.create_table('dead_letters',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('topic', sa.String(length=256), nullable=False),
        sa.Column('reason', sa.String(length=1000), nullable=False),
        sa.Column('payload', sa.String(length=4096), nullable=False),
        sa.Column('payload_size', sa.Integer(), nullable=False),
        sa.CheckConstraint('length(payload) <= 4096', name=op.f('ck_dead_letters_payload_length')),
        sa.CheckConstraint('length(reason) <= 1000', name=op.f('ck_dead_letters_reason_length')),
        sa.CheckConstraint('length(topic) <= 256', name=op.f('ck_dead_letters_topic_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    op.create_index(op.f('ix_dead_letters_received_at'), 'dead_letters', ['received_at'], unique=False)
    op.create_table('knowledge_articles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('body', sa.String(length=100000), nullable=False),
        sa.Column('category', sa.String(length=13), nullable=False),
        sa.Column('device_model', sa.String(length=64), nullable=True),
        sa.Column('symptoms', sa.JSON(), nullable=False),
        sa.Column('tags', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("category IN ('mechanical', 'electrical', 'software', 'environmental')", name=op.f('ck_knowledge_articles_category_valid')),
        sa.CheckConstraint('length(body) <= 100000', name=op.f('ck_knowledge_articles_body_length')),
        sa.CheckConstraint('length(device_model) <= 64', name=op.f('ck_knowledge_articles_device_model_length')),
        sa.CheckConstraint('length(title) <= 200', name=op.f('ck_knowledge_articles_title_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_articles'))
    )
    op.create_index(op.f('ix_knowledge_articles_category'), 'knowledge_articles', ['category'], unique=False)
    op.create_index(op.f('ix_knowledge_articles_device_model'), 'knowledge_articles', ['device_model'], unique=False)
    op.create_table('roles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=8), nullable=False),
        sa.CheckConstraint("name IN ('admin', 'manager', 'engineer', 'customer')", name=op.f('ck_roles_name_valid')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
        sa.UniqueConstraint('name', name=op.f('uq_roles_name'))
    )
    op.create_table('sites',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('customer', sa.String(length=200), nullable=False),
        sa.Column('address', sa.String(length=500), nullable=True),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('length(address) <= 500', name=op.f('ck_sites_address_length')),
        sa.CheckConstraint('length(customer) <= 200', name=op.f('ck_sites_customer_length')),
        sa.CheckConstraint('length(name) <= 200', name=op.f('ck_sites_name_length')),
        sa.CheckConstraint('length(timezone) <= 64', name=op.f('ck_sites_timezone_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sites'))
    )
    op.create_table('users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('display_name', sa.String(length=200), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('length(display_name) <= 200', name=op.f('ck_users_display_name_length')),
        sa.CheckConstraint('length(email) <= 254', name=op.f('ck_users_email_length')),
        sa.CheckConstraint('length(password_hash) <= 255', name=op.f('ck_users_password_hash_length')),
        sa.CheckConstraint('length(username) <= 64', name=op.f('ck_users_username_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('devices',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('serial', sa.String(length=64), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('install_date', sa.Date(), nullable=True),
        sa.Column('warranty_end', sa.Date(), nullable=True),
        sa.Column('firmware', sa.String(length=64), nullable=True),
        sa.Column('credential_hash', sa.String(length=255), nullable=True),
        sa.Column('online', sa.Boolean(), nullable=False),
        sa.Column('state', sa.String(length=11), nullable=True),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status_detail', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('online', 'offline', 'maintenance')", name=op.f('ck_devices_state_valid')),
        sa.CheckConstraint('length(credential_hash) <= 255', name=op.f('ck_devices_credential_hash_length')),
        sa.CheckConstraint('length(firmware) <= 64', name=op.f('ck_devices_firmware_length')),
        sa.CheckConstraint('length(id) <= 64', name=op.f('ck_devices_id_length')),
        sa.CheckConstraint('length(model) <= 64', name=op.f('ck_devices_model_length')),
        sa.CheckConstraint('length(serial) <= 64', name=op.f('ck_devices_serial_length')),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_devices_site_id_sites')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
        sa.UniqueConstraint('serial', name=op.f('uq_devices_serial'))
    )
    op.create_index(op.f('ix_devices_model'), 'devices', ['model'], unique=False)
    op.create_index(op.f('ix_devices_site_id'), 'devices', ['site_id'], unique=False)
    op.create_table('user_roles',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_user_roles_role_id_roles')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users')),
        sa.PrimaryKeyConstraint('user_id', 'role_id', name=op.f('pk_user_roles'))
    )
    op.create_table('user_sites',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_user_sites_site_id_sites')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sites_user_id_users')),
        sa.PrimaryKeyConstraint('user_id', 'site_id', name=op.f('pk_user_sites'))
    )
    op.create_table('device_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
        sa.Column('code', sa.String(length=128), nullable=False),
        sa.Column('severity', sa.String(length=8), nullable=False),
        sa.Column('text', sa.String(length=1000), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("severity IN ('info', 'warning', 'error', 'critical')", name=op.f('ck_device_events_severity_valid')),
        sa.CheckConstraint('length(code) <= 128', name=op.f('ck_device_events_code_length')),
        sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_device_events_device_id_length')),
        sa.CheckConstraint('length(text) <= 1000', name=op.f('ck_device_events_text_length')),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_events_device_id_devices')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_events')),
        sa.UniqueConstraint('device_id', 'seq', name=op.f('uq_device_events_device_id_seq'))
    )
    op.create_index(op.f('ix_device_events_ts'), 'device_events', ['ts'], unique=False)
    op.create_table('maintenance_plans',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=True),
        sa.Column('device_model', sa.String(length=64), nullable=True),
        sa.Column('kind', sa.String(length=11), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('interval_days', sa.Integer(), nullable=True),
        sa.Column('interval_usage_hours', sa.Float(), nullable=True),
        sa.Column('last_done_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('preventive', 'calibration')", name=op.f('ck_maintenance_plans_kind_valid')),
        sa.CheckConstraint('device_id IS NOT NULL OR device_model IS NOT NULL', name=op.f('ck_maintenance_plans_device_or_model')),
        sa.CheckConstraint('interval_days IS NOT NULL OR interval_usage_hours IS NOT NULL', name=op.f('ck_maintenance_plans_has_interval')),
        sa.CheckConstraint('interval_days IS NULL OR interval_days > 0', name=op.f('ck_maintenance_plans_interval_days_positive')),
        sa.CheckConstraint('interval_usage_hours IS NULL OR interval_usage_hours > 0', name=op.f('ck_maintenance_plans_interval_usage_hours_positive')),
        sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_maintenance_plans_device_id_length')),
        sa.CheckConstraint('length(device_model) <= 64', name=op.f('ck_maintenance_plans_device_model_length')),
        sa.CheckConstraint('length(title) <= 200', name=op.f('ck_maintenance_plans_title_length')),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_maintenance_plans_device_id_devices')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_plans'))
    )
    op.create_index(op.f('ix_maintenance_plans_device_id'), 'maintenance_plans', ['device_id'], unique=False)
    op.create_index(op.f('ix_maintenance_plans_device_model'), 'maintenance_plans', ['device_model'], unique=False)
    op.create_index(op.f('ix_maintenance_plans_next_due_at'), 'maintenance_plans', ['next_due_at'], unique=False)
    op.create_table('predictions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=False),
        sa.Column('made_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('horizon_days', sa.Float(), nullable=False),
        sa.Column('rul_days', sa.Float(), nullable=True),
        sa.Column('probability', sa.Float(), nullable=False),
        sa.Column('rul_lower_days', sa.Float(), nullable=True),
        sa.Column('rul_upper_days', sa.Float(), nullable=True),
        sa.Column('model_version', sa.String(length=64), nullable=False),
        sa.Column('drivers', sa.JSON(), nullable=False),
        sa.CheckConstraint('horizon_days > 0', name=op.f('ck_predictions_horizon_days_positive')),
        sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_predictions_device_id_length')),
        sa.CheckConstraint('length(model_version) <= 64', name=op.f('ck_predictions_model_version_length')),
        sa.CheckConstraint('probability >= 0 AND probability <= 1', name=op.f('ck_predictions_probability_range')),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_predictions_device_id_devices')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions'))
    )
    op.create_index('ix_predictions_device_made_at', 'predictions', ['device_id', 'made_at'], unique=False)
    op.create_table('tickets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('priority', sa.String(length=2), nullable=False),
        sa.Column('category', sa.String(length=13), nullable=False),
        sa.Column('state', sa.String(length=17), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('signature', sa.String(length=200), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('description', sa.String(length=10000), nullable=False),
        sa.Column('evidence', sa.JSON(), nullable=False),
        sa.Column('assigned_to_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('respond_by', sa.DateTime(timezone=True), nullable=True),
        sa.Column('diagnose_by', sa.DateTime(timezone=True), nullable=True),
        sa.Column('restore_by', sa.DateTime(timezone=True), nullable=True),
        sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('diagnosed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('restored_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('satisfaction_score', sa.SmallInteger(), nullable=True),
        sa.Column('satisfaction_comment', sa.String(length=2000), nullable=True),
        sa.Column('signed_off_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('signed_off_by_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("category IN ('mechanical', 'electrical', 'software', 'environmental')", name=op.f('ck_tickets_category_valid')),
        sa.CheckConstraint("priority IN ('P1', 'P2', 'P3')", name=op.f('ck_tickets_priority_valid')),
        sa.CheckConstraint("source IN ('analytics', 'device_event', 'customer', 'maintenance_plan')", name=op.f('ck_tickets_source_valid')),
        sa.CheckConstraint("state IN ('open', 'acknowledged', 'diagnosing', 'dispatched', 'repaired', 'verified', 'closed', 'cancelled', 'resolved_remotely')", name=op.f('ck_tickets_state_valid')),
        sa.CheckConstraint('length(description) <= 10000', name=op.f('ck_tickets_description_length')),
        sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_tickets_device_id_length')),
        sa.CheckConstraint('length(satisfaction_comment) <= 2000', name=op.f('ck_tickets_satisfaction_comment_length')),
        sa.CheckConstraint('length(signature) <= 200', name=op.f('ck_tickets_signature_length')),
        sa.CheckConstraint('length(title) <= 200', name=op.f('ck_tickets_title_length')),
        sa.CheckConstraint('satisfaction_score IS NULL OR satisfaction_score BETWEEN 1 AND 5', name=op.f('ck_tickets_satisfaction_score_range')),
        sa.ForeignKeyConstraint(['assigned_to_id'], ['users.id'], name=op.f('fk_tickets_assigned_to_id_users')),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_tickets_device_id_devices')),
        sa.ForeignKeyConstraint(['signed_off_by_id'], ['users.id'], name=op.f('fk_tickets_signed_off_by_id_users')),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_tickets_site_id_sites')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets'))
    )
    op.create_index(op.f('ix_tickets_created_at'), 'tickets', ['created_at'], unique=False)
    op.create_index(op.f('ix_tickets_device_id'), 'tickets', ['device_id'], unique=False)
    op.create_index(op.f('ix_tickets_site_id'), 'tickets', ['site_id'], unique=False)
    op.create_index('ix_tickets_state_priority', 'tickets', ['state', 'priority'], unique=False)
    op.create_index('uq_tickets_open_signature', 'tickets', ['device_id', 'signature'], unique=True, sqlite_where=sa.text("state NOT IN ('cancelled', 'closed', 'resolved_remotely')"), postgresql_where=sa.text("state NOT IN ('cancelled', 'closed', 'resolved_remotely')"))
    op.create_table('diagnosis_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.Column('engineer_id', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('close_reason', sa.String(length=200), nullable=True),
        sa.CheckConstraint('length(close_reason) <= 200', name=op.f('ck_diagnosis_sessions_close_reason_length')),
        sa.CheckConstraint('length(device_id) <= 64', name=op.f('ck_diagnosis_sessions_device_id_length')),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_diagnosis_sessions_device_id_devices')),
        sa.ForeignKeyConstraint(['engineer_id'], ['users.id'], name=op.f('fk_diagnosis_sessions_engineer_id_users')),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_diagnosis_sessions_ticket_id_tickets')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_diagnosis_sessions'))
    )
    op.create_index(op.f('ix_diagnosis_sessions_device_id'), 'diagnosis_sessions', ['device_id'], unique=False)
    op.create_index(op.f('ix_diagnosis_sessions_ticket_id'), 'diagnosis_sessions', ['ticket_id'], unique=False)
    op.create_table('ticket_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('from_state', sa.String(length=17), nullable=True),
        sa.Column('to_state', sa.String(length=17), nullable=True),
        sa.Column('note', sa.String(length=4000), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.CheckConstraint("from_state IN ('open', 'acknowledged', 'diagnosing', 'dispatched', 'repaired', 'verified', 'closed', 'cancelled', 'resolved_remotely')", name=op.f('ck_ticket_events_from_state_valid')),
        sa.CheckConstraint("kind IN ('transition', 'comment', 'evidence')", name=op.f('ck_ticket_events_kind_valid')),
        sa.CheckConstraint("to_state IN ('open', 'acknowledged', 'diagnosing', 'dispatched', 'repaired', 'verified', 'closed', 'cancelled', 'resolved_remotely')", name=op.f('ck_ticket_events_to_state_valid')),
        sa.CheckConstraint('length(actor) <= 128', name=op.f('ck_ticket_events_actor_length')),
        sa.CheckConstraint('length(note) <= 4000', name=op.f('ck_ticket_events_note_length')),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_events_ticket_id_tickets')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_events'))
    )
    op.create_index(op.f('ix_ticket_events_ticket_id'), 'ticket_events', ['ticket_id'], unique=False)
    op.create_table('transcript_entries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(length=7), nullable=False),
        sa.Column('command_id', sa.String(length=128), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.CheckConstraint("kind IN ('command', 'result', 'timeout', 'note')", name=op.f('ck_transcript_entries_kind_valid')),
        sa.CheckConstraint('length(command_id) <= 128', name=op.f('ck_transcript_entries_command_id_length')),
        sa.ForeignKeyConstraint(['session_id'], ['diagnosis_sessions.id'], name=op.f('fk_transcript_entries_session_id_diagnosis_sessions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_entries'))
    )
    op.create_index(op.f('ix_transcript_entries_command_id'), 'transcript_entries', ['command_id'], unique=False)
    op.create_index(op.f('ix_transcript_entries_session_id'), 'transcript_entries', ['session_id'], unique=False)

    for statement in _audit_triggers():
        op.execute(statement)
    roles = sa.table("roles", sa.column("name", sa.String))
    op.bulk_insert(roles, [{"name": name} for name in ROLES])


def _audit_triggers() -> tuple[str, ...]:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return SQLITE_AUDIT_TRIGGERS
    if dialect == "postgresql":
        return POSTGRESQL_AUDIT_TRIGGERS
    raise NotImplementedError(f"no append-only triggers for {dialect}")


def downgrade() -> None:
    op.drop_table('transcript_entries')
    op.drop_table('ticket_events')
    op.drop_table('diagnosis_sessions')
    op.drop_table('tickets')
    op.drop_table('predictions')
    op.drop_table('maintenance_plans')
    op.drop_table('device_events')
    op.drop_table('user_sites')
    op.drop_table('user_roles')
    op.drop_table('devices')
    op.drop_table('users')
    op.drop_table('sites')
    op.drop_table('roles')
    op.drop_table('knowledge_articles')
    op.drop_table('dead_letters')
    op.drop_table('audit_log')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_append_only()")
