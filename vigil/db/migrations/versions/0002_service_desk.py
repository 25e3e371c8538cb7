# ruff: noqa: E501
"""Service desk: customers, contracts, engineers, ticket scopes, pauses, alerts and notifications.

Sites now belong to a customer row instead of naming one in text: each distinct
name becomes a customer. Alembic does not compare CHECK constraints, so the
ones the models add for new columns and enum values are written out here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


EVENT_KINDS = ("transition", "comment", "evidence", "assignment", "pause", "resume",
               "escalation", "link")

TICKET_CHECKS = {
    "scope_valid": "scope IN ('device', 'site', 'fleet')",
    "pause_reason_valid": "pause_reason IN ('customer', 'parts')",
    "diagnosis_note_length": "length(diagnosis_note) <= 4000",
    "verification_result_length": "length(verification_result) <= 4000",
    "cancel_reason_length": "length(cancel_reason) <= 1000",
    "device_scope_has_device": "(scope = 'device') = (device_id IS NOT NULL)",
}


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(name) <= 200', name=op.f('ck_customers_name_length')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('name', name=op.f('uq_customers_name'))
    )
    op.create_table('engineers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('hours_start', sa.Time(), nullable=True),
    sa.Column('hours_end', sa.Time(), nullable=True),
    sa.Column('workdays', sa.JSON(), nullable=False),
    sa.Column('days_off', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('length(region) <= 64', name=op.f('ck_engineers_region_length')),
    sa.CheckConstraint('length(timezone) <= 64', name=op.f('ck_engineers_timezone_length')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_engineers_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engineers')),
    sa.UniqueConstraint('user_id', name=op.f('uq_engineers_user_id'))
    )
    with op.batch_alter_table('engineers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_engineers_region'), ['region'], unique=False)

    op.create_table('contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('hours_start', sa.Time(), nullable=True),
    sa.Column('hours_end', sa.Time(), nullable=True),
    sa.Column('workdays', sa.JSON(), nullable=False),
    sa.Column('holidays', sa.JSON(), nullable=False),
    sa.Column('levels', sa.JSON(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(hours_start IS NULL) = (hours_end IS NULL)', name=op.f('ck_contracts_hours_pair')),
    sa.CheckConstraint('customer_id IS NOT NULL OR site_id IS NOT NULL', name=op.f('ck_contracts_has_scope')),
    sa.CheckConstraint('length(name) <= 200', name=op.f('ck_contracts_name_length')),
    sa.CheckConstraint('length(timezone) <= 64', name=op.f('ck_contracts_timezone_length')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_contracts_customer_id_customers')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_contracts_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contracts'))
    )
    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contracts_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contracts_site_id'), ['site_id'], unique=False)

    op.create_table('qualifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('engineer_id', sa.Integer(), nullable=False),
    sa.Column('device_model', sa.String(length=64), nullable=False),
    sa.Column('qualified_on', sa.Date(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.CheckConstraint('length(device_model) <= 64', name=op.f('ck_qualifications_device_model_length')),
    sa.ForeignKeyConstraint(['engineer_id'], ['engineers.id'], name=op.f('fk_qualifications_engineer_id_engineers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qualifications')),
    sa.UniqueConstraint('engineer_id', 'device_model', name=op.f('uq_qualifications_engineer_id_device_model'))
    )
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qualifications_device_model'), ['device_model'], unique=False)
        batch_op.create_index(batch_op.f('ix_qualifications_engineer_id'), ['engineer_id'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=7), nullable=False),
    sa.Column('recipient', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.String(length=10000), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=7), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.CheckConstraint("channel IN ('webhook', 'email')", name=op.f('ck_notifications_channel_valid')),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f('ck_notifications_status_valid')),
    sa.CheckConstraint('length(body) <= 10000', name=op.f('ck_notifications_body_length')),
    sa.CheckConstraint('length(key) <= 200', name=op.f('ck_notifications_key_length')),
    sa.CheckConstraint('length(last_error) <= 1000', name=op.f('ck_notifications_last_error_length')),
    sa.CheckConstraint('length(recipient) <= 500', name=op.f('ck_notifications_recipient_length')),
    sa.CheckConstraint('length(subject) <= 300', name=op.f('ck_notifications_subject_length')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_notifications_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('key', name=op.f('uq_notifications_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('milestone', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_step', sa.Integer(), nullable=False),
    sa.Column('next_step_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
    sa.CheckConstraint("milestone IN ('respond', 'diagnose', 'restore')", name=op.f('ck_ticket_alerts_milestone_valid')),
    sa.CheckConstraint("state IN ('at_risk', 'breached')", name=op.f('ck_ticket_alerts_state_valid')),
    sa.CheckConstraint('length(acknowledged_by) <= 128', name=op.f('ck_ticket_alerts_acknowledged_by_length')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_alerts_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_alerts')),
    sa.UniqueConstraint('ticket_id', 'milestone', 'state', name=op.f('uq_ticket_alerts_ticket_id_milestone_state'))
    )
    with op.batch_alter_table('ticket_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_alerts_next_step_at'), ['next_step_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_alerts_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_pauses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=8), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.CheckConstraint("reason IN ('customer', 'parts')", name=op.f('ck_ticket_pauses_reason_valid')),
    sa.CheckConstraint('length(actor) <= 128', name=op.f('ck_ticket_pauses_actor_length')),
    sa.CheckConstraint('length(note) <= 1000', name=op.f('ck_ticket_pauses_note_length')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_pauses_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_pauses'))
    )
    with op.batch_alter_table('ticket_pauses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_pauses_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('region', sa.String(length=64), nullable=True))
    op.execute("INSERT INTO customers (name, created_at) SELECT DISTINCT customer, CURRENT_TIMESTAMP FROM sites")
    op.execute("UPDATE sites SET customer_id = (SELECT id FROM customers WHERE customers.name = sites.customer)")
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.alter_column('customer_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_sites_customer_id'), ['customer_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_sites_customer_id_customers'), 'customers', ['customer_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('ck_sites_customer_length'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_sites_region_length'), 'length(region) <= 64')
        batch_op.drop_column('customer')

    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ticket_events_kind_valid'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ticket_events_kind_valid'), f"kind IN ({_sql_list(EVENT_KINDS)})")

    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ticket_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_device_events_ticket_id_tickets'), 'tickets', ['ticket_id'], ['id'])
        batch_op.create_index('ix_device_events_unhandled', ['id'], unique=False, sqlite_where=sa.text('handled_at IS NULL'), postgresql_where=sa.text('handled_at IS NULL'))

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=6), nullable=False, server_default='device'))
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('contract_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('evidence_count', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('peak_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pause_reason', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('diagnosis_note', sa.String(length=4000), nullable=True))
        batch_op.add_column(sa.Column('verification_result', sa.String(length=4000), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('reopen_count', sa.SmallInteger(), nullable=False, server_default='0'))
        batch_op.alter_column('device_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_tickets_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index('uq_tickets_open_fleet_signature', ['signature'], unique=True, sqlite_where=sa.text("scope = 'fleet' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"), postgresql_where=sa.text("scope = 'fleet' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"))
        batch_op.create_index('uq_tickets_open_site_signature', ['site_id', 'signature'], unique=True, sqlite_where=sa.text("scope = 'site' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"), postgresql_where=sa.text("scope = 'site' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"))
        batch_op.create_foreign_key(batch_op.f('fk_tickets_parent_id_tickets'), 'tickets', ['parent_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_tickets_contract_id_contracts'), 'contracts', ['contract_id'], ['id'])
        for name, condition in TICKET_CHECKS.items():
            batch_op.create_check_constraint(batch_op.f(f'ck_tickets_{name}'), condition)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tickets_contract_id_contracts'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_tickets_parent_id_tickets'), type_='foreignkey')
        batch_op.drop_index('uq_tickets_open_site_signature', sqlite_where=sa.text("scope = 'site' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"), postgresql_where=sa.text("scope = 'site' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"))
        batch_op.drop_index('uq_tickets_open_fleet_signature', sqlite_where=sa.text("scope = 'fleet' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"), postgresql_where=sa.text("scope = 'fleet' AND state NOT IN ('cancelled', 'closed', 'resolved_remotely')"))
        batch_op.drop_index(batch_op.f('ix_tickets_parent_id'))
        for name in TICKET_CHECKS:
            batch_op.drop_constraint(batch_op.f(f'ck_tickets_{name}'), type_='check')
        batch_op.alter_column('device_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=False)
        batch_op.drop_column('reopen_count')
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('verification_result')
        batch_op.drop_column('diagnosis_note')
        batch_op.drop_column('pause_reason')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('peak_score')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('first_seen_at')
        batch_op.drop_column('evidence_count')
        batch_op.drop_column('contract_id')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('scope')

    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.drop_index('ix_device_events_unhandled', sqlite_where=sa.text('handled_at IS NULL'), postgresql_where=sa.text('handled_at IS NULL'))
        batch_op.drop_constraint(batch_op.f('fk_device_events_ticket_id_tickets'), type_='foreignkey')
        batch_op.drop_column('ticket_id')
        batch_op.drop_column('handled_at')

    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ticket_events_kind_valid'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ticket_events_kind_valid'), f"kind IN ({_sql_list(EVENT_KINDS[:3])})")

    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer', sa.VARCHAR(length=200), nullable=True))
    op.execute("UPDATE sites SET customer = (SELECT name FROM customers WHERE customers.id = sites.customer_id)")
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.alter_column('customer', existing_type=sa.VARCHAR(length=200), nullable=False)
        batch_op.create_check_constraint(batch_op.f('ck_sites_customer_length'), 'length(customer) <= 200')
        batch_op.drop_constraint(batch_op.f('ck_sites_region_length'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_sites_customer_id_customers'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sites_customer_id'))
        batch_op.drop_column('region')
        batch_op.drop_column('customer_id')

    with op.batch_alter_table('ticket_pauses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_pauses_ticket_id'))

    op.drop_table('ticket_pauses')
    with op.batch_alter_table('ticket_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_alerts_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_alerts_next_step_at'))

    op.drop_table('ticket_alerts')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_ticket_id'))
        batch_op.drop_index('ix_notifications_due')

    op.drop_table('notifications')
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qualifications_engineer_id'))
        batch_op.drop_index(batch_op.f('ix_qualifications_device_model'))

    op.drop_table('qualifications')
    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contracts_site_id'))
        batch_op.drop_index(batch_op.f('ix_contracts_customer_id'))

    op.drop_table('contracts')
    with op.batch_alter_table('engineers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_engineers_region'))

    op.drop_table('engineers')
    op.drop_table('customers')
