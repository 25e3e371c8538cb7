# ruff: noqa: E501
"""Devices: their newest prediction kept on the row, and an index for the risk order.

The health list sorts the fleet by risk of failure (the console's fleet page and portal
by default). Working out each device's newest prediction for every device the sort has
to look at took 9.5 ms for 5,000 devices on SQLite; kept on the device row by triggers
on predictions, in the same transaction as the prediction's write, the sort reads an
index. The insert trigger compares with what the row holds, so concurrent inserts for
one device settle on the newest (PostgreSQL re-checks the WHERE after waiting for the
row's lock); a delete of the newest, or a change to a prediction, works it out again.

SQLite refuses to rename a table into place while a trigger names it, so a later
migration that rebuilds ``devices`` in batch mode must drop these triggers first and
create them again after.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEWEST = ("SELECT p.probability, p.horizon_days, p.made_at, p.id FROM predictions p "
          "WHERE p.device_id = {device} ORDER BY p.made_at DESC, p.id DESC LIMIT 1")
SUMMARY = "(risk, risk_horizon_days, risk_made_at, risk_prediction_id)"

SQLITE_TRIGGERS = (
    """CREATE TRIGGER predictions_newest_insert AFTER INSERT ON predictions
    BEGIN
        UPDATE devices SET risk = NEW.probability, risk_horizon_days = NEW.horizon_days,
                           risk_made_at = NEW.made_at, risk_prediction_id = NEW.id
        WHERE id = NEW.device_id
          AND (risk_prediction_id IS NULL OR NEW.made_at > risk_made_at
               OR (NEW.made_at = risk_made_at AND NEW.id > risk_prediction_id));
    END""",
    f"""CREATE TRIGGER predictions_newest_delete AFTER DELETE ON predictions
    BEGIN
        UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="OLD.device_id")})
        WHERE id = OLD.device_id AND risk_prediction_id = OLD.id;
    END""",
    f"""CREATE TRIGGER predictions_newest_update
    AFTER UPDATE OF id, device_id, made_at, probability, horizon_days ON predictions
    BEGIN
        UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="OLD.device_id")})
        WHERE id = OLD.device_id;
        UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="NEW.device_id")})
        WHERE id = NEW.device_id;
    END""",
)

POSTGRESQL_TRIGGERS = (
    f"""CREATE FUNCTION devices_newest_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE devices SET risk = NEW.probability, risk_horizon_days = NEW.horizon_days,
                               risk_made_at = NEW.made_at, risk_prediction_id = NEW.id
            WHERE id = NEW.device_id
              AND (risk_prediction_id IS NULL
                   OR (NEW.made_at, NEW.id) > (risk_made_at, risk_prediction_id));
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="OLD.device_id")})
            WHERE id = OLD.device_id AND risk_prediction_id = OLD.id;
        ELSE
            UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="OLD.device_id")})
            WHERE id = OLD.device_id;
            UPDATE devices SET {SUMMARY} = ({NEWEST.format(device="NEW.device_id")})
            WHERE id = NEW.device_id;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER predictions_newest AFTER INSERT OR DELETE
    OR UPDATE OF id, device_id, made_at, probability, horizon_days ON predictions
    FOR EACH ROW EXECUTE FUNCTION devices_newest_prediction()""",
)


def _triggers() -> tuple[str, ...]:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return SQLITE_TRIGGERS
    if dialect == "postgresql":
        return POSTGRESQL_TRIGGERS
    raise NotImplementedError(f"no newest-prediction triggers for {dialect}")


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('risk', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('risk_horizon_days', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('risk_made_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('risk_prediction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
    op.create_index('ix_devices_risk_id', 'devices', ['risk', 'id'], unique=False)
    op.execute(f"UPDATE devices SET {SUMMARY} = ({NEWEST.format(device='devices.id')})")
    for statement in _triggers():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER predictions_newest ON predictions")
        op.execute("DROP FUNCTION devices_newest_prediction()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER predictions_newest_{name}")
    op.drop_index('ix_devices_risk_id', table_name='devices')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('risk_prediction_id')
        batch_op.drop_column('risk_made_at')
        batch_op.drop_column('risk_horizon_days')
        batch_op.drop_column('risk')
