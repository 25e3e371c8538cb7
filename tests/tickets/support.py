"""A small service organisation to run the desk against: one customer, sites, devices, people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.db.enums import RoleName
from vigil.devices.models import Customer, Device, Site
from vigil.engineers.models import Engineer, Qualification
from vigil.users.models import Role, User


@dataclass(frozen=True)
class Org:
    site_id: int
    other_site_id: int
    devices: tuple[str, ...]
    engineer_user_id: int
    night_engineer_user_id: int
    manager_user_id: int
    customer_user_id: int


def seed(factory: sessionmaker[Session]) -> Org:
    with factory() as s, s.begin():
        roles = {r.name: r for r in s.scalars(select(Role))}
        customer = Customer(name="St. Example Hospital")
        icu = Site(name="Central ICU", customer=customer, timezone="Europe/Berlin", region="north")
        ward = Site(name="Ward 7", customer=customer, timezone="Europe/Berlin", region="south")
        devices = [Device(id=f"vent-{i}", serial=f"V500-{i}", model="ventilator", site=icu)
                   for i in range(1, 6)]
        devices.append(Device(id="mri-1", serial="MR-1", model="mri", site=ward))
        engineer = User(username="eve", display_name="Eve Engineer", email="eve@service.example",
                        roles=[roles[RoleName.ENGINEER]])
        night = User(username="nick", display_name="Nick Nights", email="nick@service.example",
                     roles=[roles[RoleName.ENGINEER]])
        manager = User(username="mia", display_name="Mia Manager", email="mia@service.example",
                       roles=[roles[RoleName.MANAGER]])
        nurse = User(username="nora", display_name="Nora Nurse", email="nora@hospital.example",
                     roles=[roles[RoleName.CUSTOMER]], sites=[icu, ward])
        s.add_all([*devices, engineer, night, manager, nurse])
        s.flush()
        # Eve works office hours and is qualified on ventilators; Nick is on call every day.
        eve = Engineer(user_id=engineer.id, region="north", timezone="Europe/Berlin",
                       hours_start=time(8), hours_end=time(17), workdays=[0, 1, 2, 3, 4])
        nick = Engineer(user_id=night.id, region="south", timezone="Europe/Berlin",
                        workdays=list(range(7)))
        s.add_all([eve, nick])
        s.flush()
        s.add_all([
            Qualification(engineer_id=eve.id, device_model="ventilator",
                          qualified_on=date(2025, 1, 1), expires_on=date(2027, 12, 31)),
            Qualification(engineer_id=nick.id, device_model="ventilator",
                          qualified_on=date(2024, 1, 1), expires_on=date(2026, 6, 30)),
            Qualification(engineer_id=nick.id, device_model="mri",
                          qualified_on=date(2024, 1, 1), expires_on=date(2028, 1, 1)),
        ])
        return Org(site_id=icu.id, other_site_id=ward.id,
                   devices=tuple(d.id for d in devices), engineer_user_id=engineer.id,
                   night_engineer_user_id=night.id, manager_user_id=manager.id,
                   customer_user_id=nurse.id)


@dataclass(frozen=True)
class Fleet:
    """Infusion pumps of one model at four sites of two customers, and monitors beside them."""

    sites: tuple[int, ...]
    # Pump ids by site, in the order of ``sites``.
    pumps: tuple[tuple[str, ...], ...]
    monitors: tuple[str, ...]
    customer_ids: tuple[int, int]


def seed_fleet(factory: sessionmaker[Session]) -> Fleet:
    """Sites A (three pumps), B (two), C (one), D (two), the first two of one customer and
    the others of another; a monitor at each of A, B, C."""
    layout = {"A": 3, "B": 2, "C": 1, "D": 2}
    with factory() as s, s.begin():
        north, south = Customer(name="North Hospitals"), Customer(name="South Clinic")
        sites = {name: Site(name=f"Site {name}", customer=north if name in "AB" else south,
                            timezone="Europe/Berlin") for name in layout}
        pumps: dict[str, list[Device]] = {}
        n = 0
        for name, count in layout.items():
            for _ in range(count):
                n += 1
                pumps.setdefault(name, []).append(
                    Device(id=f"pump-{n}", serial=f"IP-{n}", model="IP-100", site=sites[name]))
        monitors = [Device(id=f"mon-{name}", serial=f"PM-{name}", model="PM-7", site=sites[name])
                    for name in "ABC"]
        s.add_all([*(d for group in pumps.values() for d in group), *monitors])
        s.flush()
        return Fleet(sites=tuple(sites[name].id for name in layout),
                     pumps=tuple(tuple(d.id for d in pumps[name]) for name in layout),
                     monitors=tuple(d.id for d in monitors),
                     customer_ids=(north.id, south.id))
