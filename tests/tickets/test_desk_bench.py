"""`vigil bench desk` builds a realistic desk and prints its figures."""

from __future__ import annotations

import argparse
import json

import pytest
from sqlalchemy import select

from vigil.db.enums import TicketSource
from vigil.db.session import make_engine, make_session_factory
from vigil.tickets import bench
from vigil.tickets.models import Ticket

pytestmark = [pytest.mark.servers]


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_the_desk_bench_times_the_report_over_the_rules_a_fleet_has(sql_url: str, capsys
                                                                    ) -> None:
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    args = parser.parse_args(["--devices", "50", "--tickets", "3000", "--repeat", "1",
                              "--database-url", sql_url])
    assert bench.run(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tickets"] == 3000
    assert result["report_s"] > 0 and result["report_ratio_to_count"] > 0
    engine = make_engine(sql_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(select(Ticket.device_id, Ticket.signature, Ticket.state)
                                   .where(Ticket.source == TicketSource.ANALYTICS.value)).all()
    finally:
        engine.dispose()
    signatures = {s for model in bench.analytics_signatures().values() for s in model}
    assert rows and {signature for _d, signature, _s in rows} <= signatures
    # Rules, not tickets: far fewer signatures than analytics tickets.
    assert len({signature for _d, signature, _s in rows}) <= len(signatures) < len(rows) / 5
