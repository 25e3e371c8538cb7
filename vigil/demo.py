"""`vigil demo-data`: a living service desk for a newcomer to look at.

Creates, once, a hospital group with three sites, their service contracts
(the ICU on 24 x 7, the rest on business hours with holidays), the simulated
fleet of ``vigil up --simulate N`` placed at the sites, engineers with their
qualifications, a manager and a hospital user, preventive-maintenance and
calibration plans for every simulated model, and a starter knowledge base of
the faults the simulator produces. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.db.enums import Category, MaintenanceKind, RoleName
from vigil.devices.models import Customer, Device, Site
from vigil.devices.service import NewDevice, register_missing
from vigil.engineers.models import Engineer, Qualification
from vigil.knowledge import service as knowledge
from vigil.maintenance import service as maintenance
from vigil.tickets.models import Contract
from vigil.tickets.transitions import Actor, ActorRole
from vigil.users.models import Role, User

CUSTOMER = "St. Example University Hospital"
ADMIN = Actor("demo-data", ActorRole.ADMIN)
# Where each simulated model stands.
SITE_OF_MODEL = {"ventilator": "Intensive Care Unit", "patient_monitor": "Intensive Care Unit",
                 "infusion_pump": "Ward 7", "ct": "Radiology", "mri": "Radiology"}
# Days between preventive visits and calibrations, by model; tolerances checked at calibration.
PLANS: dict[str, tuple[int, int, dict[str, dict[str, float | str]]]] = {
    "infusion_pump": (365, 365, {"flow_error_pct": {"low": -5, "high": 5, "unit": "%"}}),
    "patient_monitor": (365, 365, {"spo2_error_pct": {"low": -2, "high": 2, "unit": "%"}}),
    "ventilator": (180, 180, {"tidal_volume_error_pct": {"low": -10, "high": 10, "unit": "%"},
                              "o2_error_pct": {"low": -3, "high": 3, "unit": "%"}}),
    "ct": (90, 180, {"ct_number_water_hu": {"low": -4, "high": 4, "unit": "HU"}}),
    "mri": (90, 365, {"b0_homogeneity_ppm": {"high": 0.5, "unit": "ppm"}}),
}
ARTICLES: list[tuple[str, str, str, str, list[str], list[str], Category]] = [
    ("Battery no longer holds charge", "Short runtime on battery, battery alarm",
     "Battery pack aged past its cycles", "Replace the battery pack; run the battery test",
     ["infusion_pump", "patient_monitor"], ["BAT01"], Category.ELECTRICAL),
    ("Pump motor current rising", "Motor current trends up, occlusion alarms",
     "Worn pumping mechanism", "Replace the pumping mechanism; calibrate flow",
     ["infusion_pump"], ["MOT02"], Category.MECHANICAL),
    ("Monitor fan failure", "Internal temperature rising, fan noise",
     "Cooling fan bearing failure", "Replace the fan; clean the air path",
     ["patient_monitor"], ["FAN01"], Category.MECHANICAL),
    ("Turbine bearing wear", "Turbine vibration and current rising",
     "Bearing wear in the blower turbine", "Replace the turbine module; run the self-test",
     ["ventilator"], ["TRB03"], Category.MECHANICAL),
    ("Oxygen cell drift", "FiO2 reading drifts from the set value",
     "Galvanic O2 cell at end of life", "Replace the O2 cell; calibrate at 21 % and 100 %",
     ["ventilator"], ["O2C01"], Category.MECHANICAL),
    ("X-ray tube ageing", "Tube current falls for the same setting, arcing counts up",
     "Tube filament and anode ageing", "Plan a tube replacement; run the tube conditioning",
     ["ct"], ["TUB05"], Category.MECHANICAL),
    ("Cold head performance decline", "Helium pressure and shield temperature rising",
     "Cold head wear", "Exchange the cold head before the helium boil-off rises",
     ["mri"], ["CLD01"], Category.MECHANICAL),
    ("Supply power problems", "Restarts, mains alarms, supply voltage dips",
     "Unstable mains or a failing internal supply",
     "Check the room supply and UPS; replace the internal supply if the mains is clean",
     ["infusion_pump", "patient_monitor", "ventilator", "ct", "mri"], ["PWR01"],
     Category.ELECTRICAL),
]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=20,
                        help="simulated devices to place at the sites (as `vigil up --simulate`)")


@dataclass
class Created:
    sites: int = 0
    devices: int = 0
    engineers: int = 0
    plans: int = 0
    articles: int = 0


def seed_demo(session: Session, *, devices: list[tuple[str, str]], now: datetime) -> Created | None:
    """The demo service organisation, or None if it is there already."""
    if session.scalars(select(Customer).where(Customer.name == CUSTOMER)).first() is not None:
        return None
    created = Created()
    customer = Customer(name=CUSTOMER, created_at=now)
    sites = {name: Site(name=name, customer=customer, timezone="Europe/Berlin", region="berlin",
                        address="Example Street 1, Berlin", created_at=now)
             for name in sorted(set(SITE_OF_MODEL.values()))}
    session.add_all([customer, *sites.values()])
    session.flush()
    created.sites = len(sites)
    holidays = [f"{now.year}-12-25", f"{now.year}-12-26", f"{now.year + 1}-01-01"]
    session.add_all([
        Contract(name="Full service, business hours", customer_id=customer.id,
                 hours_start=time(8), hours_end=time(17), holidays=holidays, created_at=now),
        Contract(name="ICU 24 x 7", site_id=sites["Intensive Care Unit"].id,
                 workdays=list(range(7)), created_at=now)])
    created.devices = register_missing(session, devices=(
        NewDevice(device_id=device_id, model=model, serial=f"SIM-{device_id}")
        for device_id, model in devices))
    session.flush()
    for device_id, model in devices:
        device = session.get(Device, device_id)
        if device is not None and device.site_id is None:
            device.site_id = sites[SITE_OF_MODEL.get(model, "Ward 7")].id
            device.install_date = date(now.year - 2, 3, 1)
            # GS1 form: the model's device identifier, then the serial number.
            gtin = 4012345000000 + sorted(PLANS).index(model) if model in PLANS else 4012345999999
            device.udi = f"(01){gtin:014d}(21){device.serial}"
    roles = {r.name: r for r in session.scalars(select(Role))}
    people = [("erin", "Erin Field", RoleName.ENGINEER), ("omar", "Omar Remote", RoleName.ENGINEER),
              ("lena", "Lena Nights", RoleName.ENGINEER), ("max", "Max Manager", RoleName.MANAGER),
              ("hana", "Hana Head Nurse", RoleName.CUSTOMER)]
    users = {}
    for username, name, role in people:
        user = User(username=username, display_name=name, email=f"{username}@example.org",
                    roles=[roles[role]], created_at=now)
        if role is RoleName.CUSTOMER:
            user.sites = list(sites.values())
        users[username] = user
    session.add_all(users.values())
    session.flush()
    models = sorted(PLANS)
    for username, hours, workdays, qualified in (
            ("erin", (time(8), time(17)), [0, 1, 2, 3, 4], models[:3]),
            ("omar", (time(7), time(16)), [0, 1, 2, 3, 4], models),
            ("lena", None, list(range(7)), ["ventilator", "patient_monitor"])):
        engineer = Engineer(user_id=users[username].id, region="berlin",
                            timezone="Europe/Berlin", workdays=workdays,
                            hours_start=hours[0] if hours else None,
                            hours_end=hours[1] if hours else None)
        session.add(engineer)
        session.flush()
        session.add_all([Qualification(engineer_id=engineer.id, device_model=model,
                                       qualified_on=date(now.year - 1, 1, 15),
                                       expires_on=date(now.year + 2, 1, 15))
                         for model in qualified])
        created.engineers += 1
    baseline = now - timedelta(days=60)
    for model, (pm_days, cal_days, tolerances) in PLANS.items():
        maintenance.create_plan(session, kind=MaintenanceKind.PREVENTIVE,
                                title=f"Preventive maintenance, {model.replace('_', ' ')}",
                                device_model=model, interval_days=pm_days, lead_days=14,
                                actor=ADMIN, now=now, baseline=baseline)
        maintenance.create_plan(session, kind=MaintenanceKind.CALIBRATION,
                                title=f"Calibration, {model.replace('_', ' ')}",
                                device_model=model, interval_days=cal_days, lead_days=21,
                                grace_days=7, tolerances=tolerances, actor=ADMIN, now=now,
                                baseline=baseline)
        created.plans += 2
    # The handbook's example: lubrication every 200 hours of use.
    maintenance.create_plan(session, kind=MaintenanceKind.PREVENTIVE,
                            title="Turbine lubrication", device_model="ventilator",
                            interval_usage_hours=200, lead_days=3, actor=ADMIN, now=now)
    created.plans += 1
    for title, symptoms, cause, fix, article_models, codes, category in ARTICLES:
        knowledge.create_article(session, content=knowledge.Content(
            title=title, symptoms=symptoms, cause=cause, fix=fix, device_models=article_models,
            fault_codes=codes, categories=[category]),
            actor=Actor("demo-data", ActorRole.MANAGER), now=now)
        created.articles += 1
    return created


def run(args: argparse.Namespace) -> int:
    from vigil.config import get_settings
    from vigil.db import migrations
    from vigil.db.session import make_engine, make_session_factory, transaction
    from vigil.up import simulated_devices

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # the embedded database's folder
    engine = make_engine(settings.sql_url)
    try:
        migrations.upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            created = seed_demo(session, devices=simulated_devices(args.devices),
                                now=datetime.now(UTC))
    finally:
        engine.dispose()
    if created is None:
        print(f"vigil demo-data: {CUSTOMER} is there already; nothing changed")
        return 0
    print(f"vigil demo-data: {CUSTOMER}: {created.sites} sites, {created.devices} new devices, "
          f"{created.engineers} engineers, {created.plans} maintenance plans, "
          f"{created.articles} knowledge-base articles")
    return 0
