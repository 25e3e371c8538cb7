"""Device physics for the simulator: pure functions and classes, no I/O.

Each virtual device has a model, a site and possibly one injected fault. A
reading depends on the time of day (clinical usage follows the working day,
intensive-care devices run around the clock), the site's environment (ambient
temperature, humidity, mains voltage), sensor noise, and the fault's severity,
which grows from 0 at onset to 1 at failure. Everything is drawn from a
per-device ``random.Random`` seeded from the fleet seed and the device id, so
the same seed and the same sampling times give the same readings.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DAY_S = 86_400.0
HOUR_S = 3_600.0

MODELS = ("infusion_pump", "patient_monitor", "ventilator", "ct", "mri")

# Fault types each model can develop; power problems hit every model.
FAULT_TYPES: dict[str, tuple[str, ...]] = {
    "infusion_pump": ("battery_ageing", "motor_wear", "power_problem"),
    "patient_monitor": ("battery_ageing", "fan_failure", "power_problem"),
    "ventilator": ("turbine_bearing_wear", "o2_cell_drift", "power_problem"),
    "ct": ("tube_ageing", "anode_bearing_wear", "power_problem"),
    "mri": ("cold_head_decline", "compressor_failure", "power_problem"),
}

# Typical time from first measurable sign to failure, in days.
FAULT_DAYS: dict[str, float] = {
    "battery_ageing": 21, "motor_wear": 18, "fan_failure": 7, "turbine_bearing_wear": 25,
    "o2_cell_drift": 14, "tube_ageing": 40, "anode_bearing_wear": 20, "cold_head_decline": 30,
    "compressor_failure": 10, "power_problem": 12,
}

# Fault code a device raises itself when the fault becomes a failure.
FAILURE_CODES: dict[str, str] = {
    "battery_ageing": "E-BATT-FAIL", "motor_wear": "E-MOTOR-STALL", "fan_failure": "E-OVERTEMP",
    "turbine_bearing_wear": "E-TURBINE", "o2_cell_drift": "E-O2-CAL", "tube_ageing": "E-TUBE-ARC",
    "anode_bearing_wear": "E-ANODE-ROT", "cold_head_decline": "E-COLDHEAD",
    "compressor_failure": "E-COMPRESSOR", "power_problem": "E-PSU",
}

# Warning the device raises itself when a fault is well advanced.
WARNING_CODES: dict[str, str] = {k: v.replace("E-", "W-", 1) for k, v in FAILURE_CODES.items()}
WARNING_SEVERITY = 0.6


@dataclass(frozen=True, slots=True)
class Site:
    """A hospital's environment: climate control quality, mains supply, time zone."""

    name: str
    utc_offset_h: int = 1
    ambient_c: float = 22.0
    ambient_swing_c: float = 2.0
    humidity_pct: float = 45.0
    humidity_swing_pct: float = 8.0
    mains_v: float = 230.0
    mains_noise_v: float = 1.5

    @classmethod
    def generate(cls, name: str, rng: random.Random) -> Site:
        mains = rng.choice((230.0, 230.0, 230.0, 120.0))
        return cls(name=name, utc_offset_h=rng.choice((-5, 0, 1, 1, 2, 8)),
                   ambient_c=rng.uniform(20.0, 25.0), ambient_swing_c=rng.uniform(0.5, 4.0),
                   humidity_pct=rng.uniform(30.0, 60.0), humidity_swing_pct=rng.uniform(3.0, 12.0),
                   mains_v=mains, mains_noise_v=mains * rng.uniform(0.003, 0.01))


@dataclass(frozen=True, slots=True)
class Fault:
    """Ground truth of one injected degradation (epoch milliseconds).

    A sudden failure (``predictable=False``) has its onset at the failure: no
    precursor at all. After ``repaired_ms`` the device is healthy again.
    """

    device: str
    model: str
    fault_type: str
    onset_ms: int
    failure_ms: int
    predictable: bool = True
    repaired_ms: int | None = None

    def severity(self, t_ms: int) -> float:
        """0 before onset, growing convexly to 1 at failure (wear accelerates), 1 until repair."""
        if t_ms <= self.onset_ms or (self.repaired_ms is not None and t_ms >= self.repaired_ms):
            return 0.0
        if t_ms >= self.failure_ms:
            return 1.0
        return ((t_ms - self.onset_ms) / (self.failure_ms - self.onset_ms)) ** 2

    def progress(self, t_ms: int) -> float:
        """Linear share of the way from onset to failure: what the noise grows with."""
        if t_ms <= self.onset_ms or (self.repaired_ms is not None and t_ms >= self.repaired_ms):
            return 0.0
        if t_ms >= self.failure_ms:
            return 1.0
        return (t_ms - self.onset_ms) / (self.failure_ms - self.onset_ms)

    def broken(self, t_ms: int) -> bool:
        """Failed and not yet repaired: out of clinical service."""
        return t_ms >= self.failure_ms and (self.repaired_ms is None or t_ms < self.repaired_ms)


def local_hour(t_ms: int, site: Site) -> float:
    return ((t_ms / 1000.0 + site.utc_offset_h * HOUR_S) % DAY_S) / HOUR_S


def usage(t_ms: int, site: Site, model: str) -> float:
    """Share of time in use: a working-day curve, flatter for intensive-care devices."""
    hour = local_hour(t_ms, site)
    weekday = int((t_ms / 1000.0 + site.utc_offset_h * HOUR_S) // DAY_S + 3) % 7  # 0 = Monday
    day_curve = math.exp(-(((hour - 13.0) / 4.5) ** 2))
    if model in ("ventilator", "patient_monitor"):
        return 0.55 + 0.3 * day_curve
    weekend = 0.45 if weekday >= 5 else 1.0
    return max(0.02, 0.9 * day_curve * weekend)


@dataclass(frozen=True, slots=True)
class Environment:
    ambient_c: float
    humidity_pct: float
    supply_v: float


def environment(t_ms: int, site: Site, rng: random.Random, power_severity: float) -> Environment:
    """Room climate follows the day; mains sags and dips more as a power problem grows."""
    phase = 2 * math.pi * (local_hour(t_ms, site) - 15.0) / 24.0
    ambient = site.ambient_c + site.ambient_swing_c * math.cos(phase) + rng.gauss(0, 0.15)
    humidity = site.humidity_pct - site.humidity_swing_pct * math.cos(phase) + rng.gauss(0, 0.8)
    supply = site.mains_v + rng.gauss(0, site.mains_noise_v)
    supply -= site.mains_v * 0.06 * power_severity
    if rng.random() < 0.002 + 0.08 * power_severity:
        supply -= site.mains_v * rng.uniform(0.05, 0.25) * max(0.2, power_severity)
    return Environment(round(ambient, 2), round(min(100.0, max(0.0, humidity)), 2),
                       round(supply, 2))


@dataclass(slots=True)
class DeviceState:
    """What a device carries from one sample to the next (charge, helium, heat)."""

    last_ms: int | None = None
    battery_charge: float = 1.0
    helium_pct: float = 0.0
    tube_heat: float = 0.0
    warned: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    code: str
    severity: str
    text: str


class DeviceSim:
    """One virtual device: readings and self-raised events at given times."""

    def __init__(self, device_id: str, model: str, site: Site, seed: int,
                 faults: tuple[Fault, ...] = ()) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown device model {model!r}; known: {', '.join(MODELS)}")
        self.device_id = device_id
        self.model = model
        self.site = site
        self.faults = faults
        self.rng = random.Random(f"{seed}:{device_id}")
        self.state = DeviceState(helium_pct=self.rng.uniform(80.0, 97.0))
        self._step = getattr(self, f"_{model}")

    def severities(self, t_ms: int) -> dict[str, float]:
        return {f.fault_type: f.severity(t_ms) for f in self.faults}

    def sample(self, t_ms: int) -> dict[str, float]:
        """The device's readings at ``t_ms``; call with increasing times."""
        sev = self.severities(t_ms)
        dt_s = 1.0 if self.state.last_ms is None else max(0.0, (t_ms - self.state.last_ms) / 1000)
        self.state.last_ms = t_ms
        env = environment(t_ms, self.site, self.rng, sev.get("power_problem", 0.0))
        u = usage(t_ms, self.site, self.model)
        metrics = self._step(t_ms, dt_s, u, env, sev)
        metrics["ambient_temp_c"] = env.ambient_c
        metrics["humidity_pct"] = env.humidity_pct
        metrics["supply_voltage_v"] = env.supply_v
        return metrics

    def events(self, t_ms: int) -> list[DeviceEvent]:
        """Fault codes the device itself raises: a warning when advanced, an error at failure."""
        raised: list[DeviceEvent] = []
        for fault in self.faults:
            s = fault.severity(t_ms)
            kind = fault.fault_type
            if s >= WARNING_SEVERITY and kind not in self.state.warned:
                self.state.warned.add(kind)
                raised.append(DeviceEvent(WARNING_CODES[kind], "warning",
                                          f"{kind.replace('_', ' ')} suspected"))
            if t_ms >= fault.failure_ms and kind not in self.state.failed:
                self.state.failed.add(kind)
                raised.append(DeviceEvent(FAILURE_CODES[kind], "critical",
                                          f"{kind.replace('_', ' ')}: device out of service"))
        return raised

    # --- models ---------------------------------------------------------------

    def _noise(self, sd: float) -> float:
        return self.rng.gauss(0.0, sd)

    def _infusion_pump(self, t: int, dt: float, u: float, env: Environment,
                       sev: dict[str, float]) -> dict[str, float]:
        st = self.state
        running = self.rng.random() < u
        flow = self.rng.uniform(5.0, 250.0) if running else 0.0
        wear = sev.get("motor_wear", 0.0)
        age = sev.get("battery_ageing", 0.0)
        # On mains most of the time; off mains during transport it discharges.
        on_battery = running and self.rng.random() < 0.15
        capacity_h = 8.0 * (1.0 - 0.85 * age)
        if on_battery:
            st.battery_charge = max(0.0, st.battery_charge - dt / (capacity_h * HOUR_S))
        else:
            st.battery_charge = min(1.0, st.battery_charge + dt / (3 * HOUR_S))
        load = 0.35 if running else 0.05
        internal_r = 0.08 + 0.5 * age
        volts = 6.4 + 1.9 * st.battery_charge - load * internal_r * 4 + self._noise(0.01)
        return {
            "flow_rate_ml_h": round(flow, 1),
            "motor_current_ma": round((90.0 + 0.9 * flow) * (1 + 0.6 * wear) + self._noise(3.0)
                                      if running else 4.0 + self._noise(0.5), 2),
            "occlusion_pressure_mmhg": round(max(0.0, (120.0 + 0.3 * flow if running else 5.0)
                                                 + self._noise(6.0)
                                                 + 90.0 * wear * self.rng.random()), 1),
            "battery_voltage_v": round(volts, 3),
            "battery_temp_c": round(env.ambient_c + 2.0 + 3.0 * load + 9.0 * age
                                    + self._noise(0.2), 2),
            "volume_error_pct": round(self._noise(0.6)
                                      + 7.0 * wear * (1.0 if running else 0.0), 2),
        }

    def _patient_monitor(self, t: int, dt: float, u: float, env: Environment,
                         sev: dict[str, float]) -> dict[str, float]:
        fan = sev.get("fan_failure", 0.0)
        age = sev.get("battery_ageing", 0.0)
        power = sev.get("power_problem", 0.0)
        fan_rpm = 3200.0 * (1.0 - 0.8 * fan) + self._noise(40.0 + 300.0 * fan)
        return {
            "fan_speed_rpm": round(max(0.0, fan_rpm), 0),
            "internal_temp_c": round(env.ambient_c + 9.0 + 4.0 * u + 22.0 * fan
                                     + self._noise(0.3), 2),
            "battery_voltage_v": round(12.4 - 1.6 * age + self._noise(0.02), 3),
            "spo2_led_current_ma": round(18.0 + 2.0 * u + self._noise(0.4), 2),
            "ecg_noise_uv": round(abs(8.0 + self._noise(1.5)
                                      + 35.0 * power * self.rng.random()), 2),
        }

    def _ventilator(self, t: int, dt: float, u: float, env: Environment,
                    sev: dict[str, float]) -> dict[str, float]:
        bearing = sev.get("turbine_bearing_wear", 0.0)
        drift = sev.get("o2_cell_drift", 0.0)
        breath_phase = (t / 1000.0) % 4.0 / 4.0
        airway = 5.0 + 20.0 * max(0.0, math.sin(math.pi * breath_phase * 2.5)) * u
        speed = 18_000 + 16_000 * u + self._noise(150.0 + 1500.0 * bearing)
        return {
            "turbine_speed_rpm": round(speed, 0),
            "turbine_temp_c": round(env.ambient_c + 14.0 + 10.0 * u + 28.0 * bearing
                                    + self._noise(0.4), 2),
            "turbine_vibration_mm_s": round(abs(0.8 + self._noise(0.08) + 4.0 * bearing), 3),
            "o2_cell_mv": round(58.0 * (1.0 - 0.45 * drift) + self._noise(0.3), 2),
            "fio2_measured_pct": round(40.0 * (1.0 - 0.3 * drift) + self._noise(0.4), 2),
            "airway_pressure_cmh2o": round(airway + self._noise(0.5), 2),
        }

    def _ct(self, t: int, dt: float, u: float, env: Environment,
            sev: dict[str, float]) -> dict[str, float]:
        st = self.state
        tube = sev.get("tube_ageing", 0.0)
        anode = sev.get("anode_bearing_wear", 0.0)
        scanning = self.rng.random() < u * 0.6
        # Tube heat rises with each exposure and cools towards the oil temperature.
        target = 1.0 if scanning else 0.0
        tau = 600.0
        st.tube_heat += (target - st.tube_heat) * min(1.0, dt / tau)
        arcs_rate = (0.05 + 25.0 * tube ** 2) * (0.2 + u)
        arcs = _poisson(self.rng, arcs_rate)
        return {
            "tube_temp_c": round(45.0 + 70.0 * st.tube_heat + 35.0 * tube + self._noise(0.8), 2),
            "oil_temp_c": round(env.ambient_c + 12.0 + 25.0 * st.tube_heat + self._noise(0.3), 2),
            "tube_current_ma": round((250.0 + self.rng.uniform(0, 250.0)) * (1 - 0.2 * tube)
                                     if scanning else 0.0, 1),
            "anode_rotation_hz": round((150.0 if scanning else 60.0) * (1.0 - 0.12 * anode)
                                       + self._noise(0.5 + 4.0 * anode), 2),
            "arcs_per_hour": float(arcs),
            "gantry_vibration_mm_s": round(abs(1.1 + (0.6 if scanning else 0.0) + 3.5 * anode
                                               + self._noise(0.1)), 3),
            "scans_per_hour": float(_poisson(self.rng, 14.0 * u)),
        }

    def _mri(self, t: int, dt: float, u: float, env: Environment,
             sev: dict[str, float]) -> dict[str, float]:
        st = self.state
        cold = sev.get("cold_head_decline", 0.0)
        comp = sev.get("compressor_failure", 0.0)
        cooling = max(0.0, 1.0 - 0.9 * cold - 0.9 * comp)
        cold_head_k = 4.1 + 0.3 * (1 - cooling) * 10 + self._noise(0.02)
        # Zero boil-off when the cold head keeps up; helium boils away as it weakens.
        boil_pct_per_day = 0.02 + 1.5 * (1.0 - cooling)
        st.helium_pct = max(0.0, st.helium_pct - boil_pct_per_day * dt / DAY_S)
        return {
            "helium_level_pct": round(st.helium_pct + self._noise(0.02), 3),
            "cold_head_temp_k": round(cold_head_k, 3),
            "compressor_current_a": round(11.5 + 1.0 * u + 5.0 * comp * self.rng.random()
                                          + self._noise(0.15), 3),
            "magnet_pressure_psi": round(1.2 + 2.2 * (1.0 - cooling) + self._noise(0.01), 3),
            "gradient_coil_temp_c": round(env.ambient_c + 6.0 + 14.0 * u + self._noise(0.3), 2),
        }


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; means here are small."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
