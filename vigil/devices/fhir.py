"""Devices as HL7 FHIR R4 resources, for the systems a hospital already runs.

Each device becomes a ``Device`` holding one ``DeviceMetric`` per reading it
reports, as contained resources: Vigil serves no ``DeviceMetric`` endpoint, so
a metric has no identity outside its device. The models are fhir.resources'
R4B ones: R4B left ``Device``, ``DeviceMetric`` and ``Bundle`` exactly as R4
defined them, and building a model validates the resource.

Pure functions: the caller loads the rows, readings and calibration plans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntrySearch, BundleLink
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device as FhirDevice
from fhir.resources.R4B.device import DeviceDeviceName, DeviceUdiCarrier, DeviceVersion
from fhir.resources.R4B.devicemetric import DeviceMetric, DeviceMetricCalibration
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource

from edge_agent.protocol import DEVICE_ID_RE
from vigil.db.enums import DeviceState, MaintenanceKind
from vigil.devices.models import Device
from vigil.maintenance.models import MaintenancePlan

FHIR_JSON = "application/fhir+json"
# Vigil's device ids (the MQTT ids) as a FHIR identifier system.
DEVICE_ID_SYSTEM = "urn:vigil:device-id"
METRIC_SYSTEM = "urn:vigil:metric"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
STATUS_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/device-status-reason"
GS1_DI_ISSUER = "http://hl7.org/fhir/NamingSystem/gs1-di"
# A GS1 UDI in human-readable form starts with its device identifier, AI (01) and 14 digits.
GS1_DI = re.compile(r"^\(01\)(\d{14})")

DeviceStatus = Literal["active", "inactive", "entered-in-error", "unknown"]
StatusReason = Literal["online", "paused", "standby", "offline", "not-ready",
                       "transduc-discon", "hw-discon", "off"]
OperationalStatus = Literal["on", "off", "standby", "entered-in-error"]
CalibrationState = Literal["not-calibrated", "calibration-required", "calibrated", "unspecified"]

# FHIR ids allow letters, digits, '-' and '.'; device ids also allow '_'. Escaping '.' and '_'
# as '.' and two hex digits keeps the mapping reversible and leaves most ids as they are.
# A 64-character device id full of them escapes to more than FHIR's 64: still answered.
_ESCAPES = {".": ".2e", "_": ".5f"}
_ESCAPED = re.compile(r"\.(2e|5f)")
_ESCAPED_ID = re.compile(r"^[A-Za-z0-9\-.]{1,192}$")


def fhir_id(device_id: str) -> str:
    """The device's FHIR logical id."""
    return "".join(_ESCAPES.get(char, char) for char in device_id)


def device_id_of(logical_id: str) -> str | None:
    """The device id behind a FHIR logical id, or None if no device id maps to it."""
    if not _ESCAPED_ID.fullmatch(logical_id):
        return None
    device_id = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), logical_id)
    if fhir_id(device_id) != logical_id or not DEVICE_ID_RE.fullmatch(device_id):
        return None
    return device_id


@dataclass(frozen=True, slots=True)
class Calibration:
    """A device's calibration as its plans record it."""

    state: CalibrationState
    time: datetime | None


def calibration_of(
    device: Device, plans: Iterable[MaintenancePlan], *, now: datetime
) -> Calibration | None:
    """The calibration state of ``device`` from the active calibration plans, None without any.

    The device's own plans override its model's; of several, the one due first
    speaks, since an overdue calibration is what a biomedical department must see.
    """
    relevant = [p for p in plans
                if p.active and p.kind == MaintenanceKind.CALIBRATION
                and (p.device_id == device.id or (p.device_id is None
                                                  and p.device_model == device.model))]
    own = [p for p in relevant if p.device_id == device.id]
    candidates = own or relevant
    if not candidates:
        return None
    plan = min(candidates, key=lambda p: (p.next_due_at is None, p.next_due_at or now, p.id or 0))
    if plan.next_due_at is not None and plan.next_due_at <= now:
        return Calibration("calibration-required", plan.last_done_at)
    if plan.last_done_at is not None:
        return Calibration("calibrated", plan.last_done_at)
    return Calibration("not-calibrated", None)


def device_status(device: Device) -> tuple[DeviceStatus, StatusReason | None]:
    """FHIR status and reason from what the device last said about itself.

    FHIR's ``inactive`` means lost, expired or damaged, not a dropped connection,
    so an installed device that has reported is ``active`` and the reason says
    whether it is online, offline or in maintenance; one never heard from is ``unknown``.
    """
    if device.state == DeviceState.MAINTENANCE:
        return "active", "not-ready"
    if device.online:
        return "active", "online"
    if device.last_seen is None and device.state is None:
        return "unknown", None
    return "active", "offline"


def operational_status(device: Device) -> OperationalStatus | None:
    """Whether the device's metrics are measuring now; None for a device never heard from."""
    if device.state == DeviceState.MAINTENANCE:
        return "standby"
    if device.online:
        return "on"
    if device.last_seen is None and device.state is None:
        return None
    return "off"


def device_metrics(
    device: Device, metrics: Iterable[str], calibration: Calibration | None
) -> list[DeviceMetric]:
    """One measurement DeviceMetric per reading, to be contained in the device's resource."""
    status = operational_status(device)
    calibrations = None
    if calibration is not None:
        calibrations = [DeviceMetricCalibration(type="unspecified", state=calibration.state,
                                                time=calibration.time)]
    return [
        DeviceMetric(
            id=f"metric-{n}",
            identifier=[Identifier(system=METRIC_SYSTEM, value=name)],
            type=CodeableConcept(text=name),
            source=Reference(reference="#"),
            operationalStatus=status,
            category="measurement",
            calibration=calibrations,
        )
        for n, name in enumerate(sorted(metrics), start=1)
    ]


def _udi_carrier(udi: str) -> DeviceUdiCarrier:
    match = GS1_DI.match(udi)
    if match is None:
        return DeviceUdiCarrier(carrierHRF=udi)
    return DeviceUdiCarrier(deviceIdentifier=match.group(1), issuer=GS1_DI_ISSUER,
                            carrierHRF=udi, entryType="unknown")


def device_resource(
    device: Device,
    *,
    metrics: Iterable[str] = (),
    calibration: Calibration | None = None,
) -> FhirDevice:
    """The FHIR Device for a registry row, with a DeviceMetric per reading it reports."""
    status, reason = device_status(device)
    site = device.site
    contained: list[Resource] = [*device_metrics(device, metrics, calibration)]
    return FhirDevice(
        id=fhir_id(device.id),
        contained=contained or None,
        identifier=[
            Identifier(system=DEVICE_ID_SYSTEM, value=device.id),
            Identifier(type=CodeableConcept(coding=[Coding(system=V2_IDENTIFIER_TYPE,
                                                           code="SNO")],
                                            text="Serial number"),
                       value=device.serial),
        ],
        udiCarrier=[_udi_carrier(device.udi)] if device.udi else None,
        status=status,
        statusReason=None if reason is None else [
            CodeableConcept(coding=[Coding(system=STATUS_REASON_SYSTEM, code=reason)])],
        serialNumber=device.serial,
        deviceName=[DeviceDeviceName(name=device.model, type="model-name")],
        modelNumber=device.model,
        version=[DeviceVersion(type=CodeableConcept(text="firmware"), value=device.firmware)]
        if device.firmware else None,
        owner=Reference(display=site.customer.name) if site is not None else None,
        location=Reference(display=site.name) if site is not None else None,
    )


def searchset(
    resources: Sequence[FhirDevice], *, base_url: str, self_url: str, next_url: str | None,
    now: datetime | None = None,
) -> Bundle:
    """A searchset Bundle of Device resources; ``base_url`` ends with ``/``."""
    links = [BundleLink(relation="self", url=self_url)]
    if next_url is not None:
        links.append(BundleLink(relation="next", url=next_url))
    return Bundle(
        type="searchset",
        timestamp=now or datetime.now(UTC),
        link=links,
        entry=[BundleEntry(fullUrl=f"{base_url}Device/{r.id}", resource=r,
                           search=BundleEntrySearch(mode="match"))
               for r in resources] or None,
    )
