# ruff: noqa: E501
"""Tickets: whether a survey was issued, and the lead time a prediction gave, kept on the row.

The service-quality report reads both for every ticket of its period. Counting the
surveys through an outer join scanned and hashed every survey ever issued (22,658 for
the 6,102 tickets of the 90-day report over 50,000, about a quarter of its main
statement's time); the lead time was parsed out of the evidence JSON of each confirmed
prediction. Now ``surveyed`` is set by triggers on ``satisfaction_surveys``, in the
transaction that issues or removes the survey, and ``lead_hours`` is a column the
database generates from ``evidence`` (stored on PostgreSQL, computed when read on
SQLite, which can only add virtual ones); it is NULL unless the value is a number.

SQLite refuses to rename a table into place while a trigger names it, so a later
migration that rebuilds ``tickets`` or ``satisfaction_surveys`` in batch mode must drop
these triggers first and create them again after.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEAD_HOURS = {
    "postgresql": "CASE WHEN json_typeof(evidence #> '{recent,0,data,hours_to_failure}') = 'number' "
                  "THEN CAST(evidence #>> '{recent,0,data,hours_to_failure}' AS DOUBLE PRECISION) END",
    "sqlite": "CASE WHEN json_type(evidence, '$.recent[0].data.hours_to_failure') IN ('integer', 'real') "
              "THEN json_extract(evidence, '$.recent[0].data.hours_to_failure') END",
}

SQLITE_TRIGGERS = (
    """CREATE TRIGGER satisfaction_surveys_surveyed_insert AFTER INSERT ON satisfaction_surveys
    BEGIN
        UPDATE tickets SET surveyed = 1 WHERE id = NEW.ticket_id;
    END""",
    """CREATE TRIGGER satisfaction_surveys_surveyed_delete AFTER DELETE ON satisfaction_surveys
    BEGIN
        UPDATE tickets SET surveyed = 0 WHERE id = OLD.ticket_id;
    END""",
    """CREATE TRIGGER satisfaction_surveys_surveyed_update AFTER UPDATE OF ticket_id ON satisfaction_surveys
    BEGIN
        UPDATE tickets SET surveyed = 0 WHERE id = OLD.ticket_id;
        UPDATE tickets SET surveyed = 1 WHERE id = NEW.ticket_id;
    END""",
)

# A ticket has at most one survey (ticket_id is unique), so removing it clears the flag.
POSTGRESQL_TRIGGERS = (
    """CREATE FUNCTION tickets_surveyed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE tickets SET surveyed = false WHERE id = OLD.ticket_id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            UPDATE tickets SET surveyed = true WHERE id = NEW.ticket_id;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER satisfaction_surveys_surveyed AFTER INSERT OR DELETE
    OR UPDATE OF ticket_id ON satisfaction_surveys
    FOR EACH ROW EXECUTE FUNCTION tickets_surveyed()""",
)


def _dialect() -> str:
    dialect = op.get_bind().dialect.name
    if dialect not in LEAD_HOURS:
        raise NotImplementedError(f"no report figures for {dialect}")
    return dialect


def upgrade() -> None:
    dialect = _dialect()
    # Plain ADD COLUMNs: no rebuild of the tickets table on SQLite.
    op.add_column('tickets', sa.Column('surveyed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('tickets', sa.Column('lead_hours', sa.Float(), sa.Computed(LEAD_HOURS[dialect], persisted=True if dialect == 'postgresql' else None), nullable=True))
    op.execute("UPDATE tickets SET surveyed = EXISTS "
               "(SELECT 1 FROM satisfaction_surveys s WHERE s.ticket_id = tickets.id)")
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRESQL_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if _dialect() == "postgresql":
        op.execute("DROP TRIGGER satisfaction_surveys_surveyed ON satisfaction_surveys")
        op.execute("DROP FUNCTION tickets_surveyed()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER satisfaction_surveys_surveyed_{name}")
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('lead_hours')
        batch_op.drop_column('surveyed')
