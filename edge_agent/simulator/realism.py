"""Realistic faults: degradation hidden in relations, a fleet that varies, a world that interferes.

The easy physics in ``physics`` lets a fault push one reading far out of its
band, every device of a model shares one baseline, and the device warns before
it fails. Here, instead:

- a fault shows first as a growing noise (linear in the way to failure) and
  then as a shift in a relation (motor current for a given flow, a temperature
  above what ambient and usage explain), small next to the day-to-day swing of
  the daily means that weather and busy weeks cause;
- every device has its own baselines and gains, some sensors age (slow drift,
  reset by calibration at preventive maintenance), usage varies with the site's
  busy weeks and with a move to a busier ward;
- sites have air-conditioning failures and mains sags that touch every device
  there, sensors glitch (spikes, stuck values, dropouts), devices go into
  maintenance, fail (some suddenly, with no precursor at all) and are repaired;
- a device raises a fault code only when it fails, never a warning before.

All of it is planned in ``scenario`` from the seed and written to the ground
truth; this module only turns the plan into readings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_agent.simulator.physics import (
    DAY_S,
    FAILURE_CODES,
    DeviceEvent,
    DeviceSim,
    Environment,
    Fault,
    Site,
    _poisson,
    usage,
)

DAY_MS = int(DAY_S * 1000)
TWO_PI = 2 * math.pi

# Per-device multipliers of the physics' constants (baselines and gains), by model.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "infusion_pump": ("c0", "slope", "occl", "capacity", "r", "bt"),
    "patient_monitor": ("fan", "th", "capacity", "led", "ecg", "bv"),
    "ventilator": ("sp", "vib", "tt", "o2", "aw"),
    "ct": ("t0", "oil", "an", "gv", "arc"),
    "mri": ("ch", "he", "cc", "mp", "gc"),
}

# Sensors that age: the metrics whose reading may drift slowly, by model.
DRIFTING: dict[str, tuple[str, ...]] = {
    "infusion_pump": ("occlusion_pressure_mmhg", "battery_temp_c"),
    "patient_monitor": ("internal_temp_c", "spo2_led_current_ma"),
    "ventilator": ("o2_cell_mv", "turbine_vibration_mm_s"),
    "ct": ("oil_temp_c", "gantry_vibration_mm_s"),
    "mri": ("helium_level_pct", "magnet_pressure_psi"),
}


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of time ``[start_ms, end_ms)``: a site episode, a glitch or a maintenance visit.

    ``size`` is the episode's strength (degrees of extra heat, the share of the
    mains lost) or a spike's relative jump; ``metric`` names a glitch's sensor.
    """

    kind: str
    start_ms: int
    end_ms: int
    size: float = 0.0
    metric: str = ""


@dataclass(frozen=True, slots=True)
class SiteRealism:
    """What a site does to all its devices: weather, busy weeks, seasons, episodes.

    ``weather`` and ``busy`` are sums of slow sines, (amplitude, period in days,
    phase): smooth, cheap and a pure function of time.
    """

    site: str
    weather: tuple[tuple[float, float, float], ...]
    busy: tuple[tuple[float, float, float], ...]
    season_c: float
    season_phase: float
    episodes: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True)
class Realism:
    """One device's own world: its constants, ageing sensors, usage, glitches, maintenance."""

    site: SiteRealism
    origin_ms: int
    params: dict[str, float]
    noise: float
    usage_scale: float
    use_change_ms: int | None = None
    use_change_scale: float = 1.0
    drift_per_day: dict[str, float] = field(default_factory=dict)
    glitches: tuple[Window, ...] = ()
    maintenance: tuple[Window, ...] = ()


def _angular(terms: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, float, float],
                                                                        ...]:
    """(amplitude, period, phase) as (amplitude, angular speed, phase), for the hot loop."""
    return tuple((a, TWO_PI / period, phase) for a, period, phase in terms)


class RealisticDeviceSim(DeviceSim):
    """A device whose faults hide in relations and whose world is untidy."""

    def __init__(self, device_id: str, model: str, site: Site, seed: int,
                 faults: tuple[Fault, ...], real: Realism) -> None:
        super().__init__(device_id, model, site, seed, faults)
        self.real = real
        self.k = real.params
        self._real_step = getattr(self, f"_{model}_real")
        self._nk = real.noise
        self._stuck: dict[int, float] = {}
        self._spiked: set[int] = set()
        self._fio2_block = -1
        self._fio2 = 40.0
        self._last_scan_ms: int | None = None
        self._weather = _angular(real.site.weather)
        self._busy = _angular(real.site.busy)
        self._season_w = TWO_PI / 365.25
        # Glitches and maintenance are rare: one bounds check skips them almost always.
        self._glitch_span = (min((g.start_ms for g in real.glitches), default=0),
                             max((g.end_ms for g in real.glitches), default=0))
        self._first_visit = min((w.start_ms for w in real.maintenance), default=1 << 62)

    def progress(self, t_ms: int) -> dict[str, float]:
        return {f.fault_type: f.progress(t_ms) for f in self.faults}

    def _rn(self, sd: float) -> float:
        return self.rng.gauss(0.0, sd * self._nk)

    def sample(self, t_ms: int) -> dict[str, float]:
        real = self.real
        if self.faults:
            sev, prog = self.severities(t_ms), self.progress(t_ms)
        else:
            sev = prog = {}
        dt_s = 1.0 if self.state.last_ms is None else max(0.0, (t_ms - self.state.last_ms) / 1000)
        self.state.last_ms = t_ms
        power = prog.get("power_problem", 0.0)
        # A failing power supply shows as ripple: more noise everywhere, no shift.
        self._nk = real.noise * (1.0 + 1.2 * power)
        env = self._environment(t_ms, power)
        days = (t_ms - real.origin_ms) / DAY_MS
        busy = 1.0
        for a, w, phase in self._busy:
            busy += a * math.sin(w * days + phase)
        u = usage(t_ms, self.site, self.model) * real.usage_scale * busy
        if real.use_change_ms is not None and t_ms >= real.use_change_ms:
            u *= real.use_change_scale
        u = min(1.0, max(0.02, u))
        if sev and any(f.broken(t_ms) for f in self.faults):
            u = 0.02  # out of clinical service until repaired
        last_cal = real.origin_ms
        if t_ms >= self._first_visit:
            for window in real.maintenance:
                if window.start_ms <= t_ms < window.end_ms:
                    # Test cycles: full load and idle in turns of ten minutes.
                    u = 1.0 if (t_ms // 600_000) % 2 else 0.05
                if last_cal < window.end_ms <= t_ms:
                    last_cal = window.end_ms
        metrics = self._real_step(t_ms, dt_s, u, env, sev, prog)
        if real.drift_per_day:
            aged = (t_ms - last_cal) / DAY_MS
            for name, rate in real.drift_per_day.items():
                metrics[name] = round(metrics[name] * (1.0 + rate * aged), 3)
        metrics["ambient_temp_c"] = env.ambient_c
        metrics["humidity_pct"] = env.humidity_pct
        metrics["supply_voltage_v"] = env.supply_v
        if self._glitch_span[0] <= t_ms < self._glitch_span[1]:
            self._glitch(t_ms, metrics)
        return metrics

    def _glitch(self, t_ms: int, metrics: dict[str, float]) -> None:
        for i, g in enumerate(self.real.glitches):
            if not g.start_ms <= t_ms < g.end_ms or g.metric not in metrics:
                continue
            if g.kind == "dropout":
                del metrics[g.metric]
            elif g.kind == "stuck":
                metrics[g.metric] = self._stuck.setdefault(i, metrics[g.metric])
            elif i not in self._spiked:  # a spike hits the first sample in its window only
                self._spiked.add(i)
                metrics[g.metric] = round(metrics[g.metric] * (1.0 + g.size), 3)

    def _environment(self, t_ms: int, power: float) -> Environment:
        site, sr, rng = self.site, self.real.site, self.rng
        days = (t_ms - self.real.origin_ms) / DAY_MS
        weather = 0.0
        for a, w, ph in self._weather:
            weather += a * math.sin(w * days + ph)
        phase = TWO_PI * (((t_ms / 1000.0 + site.utc_offset_h * 3600.0) % DAY_S) / 3600.0
                          - 15.0) / 24.0
        swing = math.cos(phase)
        ambient = (site.ambient_c + sr.season_c * math.sin(self._season_w * days + sr.season_phase)
                   + weather + site.ambient_swing_c * swing + rng.gauss(0, 0.15))
        supply = site.mains_v + rng.gauss(0, site.mains_noise_v * (1.0 + 2.0 * power))
        for ep in sr.episodes:
            if ep.start_ms <= t_ms < ep.end_ms:
                if ep.kind == "ac_failure":
                    # The room heats up over about two hours and stays hot until fixed.
                    ambient += ep.size * min(1.0, (t_ms - ep.start_ms) / 7_200_000)
                else:
                    supply -= site.mains_v * ep.size
        if rng.random() < 0.002 + 0.01 * power:
            supply -= site.mains_v * rng.uniform(0.05, 0.25)
        humidity = site.humidity_pct - site.humidity_swing_pct * swing - 1.5 * weather
        humidity += rng.gauss(0, 0.8)
        return Environment(round(ambient, 2), round(min(100.0, max(0.0, humidity)), 2),
                           round(supply, 2))

    def events(self, t_ms: int) -> list[DeviceEvent]:
        """Only the failure itself raises a code: many devices give no warning before."""
        raised: list[DeviceEvent] = []
        for fault in self.faults:
            kind = fault.fault_type
            if t_ms >= fault.failure_ms and kind not in self.state.failed:
                self.state.failed.add(kind)
                raised.append(DeviceEvent(FAILURE_CODES[kind], "critical",
                                          f"{kind.replace('_', ' ')}: device out of service"))
        return raised

    # --- models ---------------------------------------------------------------
    # Effect sizes are set against the day-to-day swing of the daily means (weather,
    # busy weeks) so that a per-device band on one reading sees most faults late or
    # never, while the residual of a relation moves by many of its own noise units.

    def _infusion_pump_real(self, t: int, dt: float, u: float, env: Environment,
                            sev: dict[str, float], prog: dict[str, float]) -> dict[str, float]:
        st, k, rng, n = self.state, self.k, self.rng, self._rn
        running = rng.random() < u
        flow = rng.uniform(5.0, 250.0) if running else 0.0
        wear, wear_p = sev.get("motor_wear", 0.0), prog.get("motor_wear", 0.0)
        age, age_p = sev.get("battery_ageing", 0.0), prog.get("battery_ageing", 0.0)
        on_battery = running and rng.random() < 0.15
        capacity_h = 8.0 * k["capacity"] * (1.0 - 0.5 * age)
        if on_battery:
            st.battery_charge = max(0.0, st.battery_charge - dt / (capacity_h * 3600.0))
        else:
            st.battery_charge = min(1.0, st.battery_charge + dt / (3 * 3600.0))
        load = 0.35 if running else 0.05
        internal_r = 0.08 * k["r"] + 0.15 * age
        volts = (6.4 + 1.9 * st.battery_charge - load * internal_r * 4
                 + 0.004 * (env.ambient_c - 22.0) + n(0.01 * (1 + 2 * age_p)))
        if running:
            current = ((90.0 * k["c0"] + 0.9 * k["slope"] * flow * (1 + 0.1 * wear))
                       + n(3.0 * (1 + 1.5 * wear_p)))
            pressure = 120.0 * k["occl"] + 0.3 * flow + n(6.0 * (1 + 0.5 * wear_p))
        else:
            current = 4.0 + n(0.5)
            pressure = 5.0 + n(6.0)
        return {
            "flow_rate_ml_h": round(flow, 1),
            "motor_current_ma": round(current, 2),
            "occlusion_pressure_mmhg": round(max(0.0, pressure), 1),
            "battery_voltage_v": round(volts, 3),
            "battery_temp_c": round(env.ambient_c + 2.0 * k["bt"] + 3.0 * load
                                    + 4.0 * age * load + n(0.2 * (1 + age_p)), 2),
            "volume_error_pct": round(n(0.6 * (1 + wear_p))
                                      + (0.8 * wear if running else 0.0), 2),
        }

    def _patient_monitor_real(self, t: int, dt: float, u: float, env: Environment,
                              sev: dict[str, float], prog: dict[str, float]) -> dict[str, float]:
        st, k, rng, n = self.state, self.k, self.rng, self._rn
        fan, fan_p = sev.get("fan_failure", 0.0), prog.get("fan_failure", 0.0)
        age, age_p = sev.get("battery_ageing", 0.0), prog.get("battery_ageing", 0.0)
        # Transports between wards run on battery; an aged battery empties faster.
        on_battery = rng.random() < 0.06 * u
        capacity_h = 5.0 * k["capacity"] * (1.0 - 0.6 * age)
        if on_battery:
            st.battery_charge = max(0.0, st.battery_charge - dt / (capacity_h * 3600.0))
        else:
            st.battery_charge = min(1.0, st.battery_charge + dt / (3 * 3600.0))
        volts = (11.6 * k["bv"] + 0.8 * st.battery_charge - (0.25 * age if on_battery else 0.0)
                 + 0.003 * (env.ambient_c - 22.0) + n(0.02 * (1 + 2 * age_p)))
        return {
            "fan_speed_rpm": round(max(0.0, 3200.0 * k["fan"] * (1.0 - 0.05 * fan)
                                       + n(40.0 * (1 + 4 * fan_p))), 0),
            "internal_temp_c": round(env.ambient_c + 9.0 * k["th"] + 4.0 * u + 3.0 * fan
                                     + n(0.3 * (1 + fan_p)), 2),
            "battery_voltage_v": round(volts, 3),
            "spo2_led_current_ma": round(18.0 * k["led"] + 2.0 * u + n(0.4), 2),
            "ecg_noise_uv": round(abs(8.0 * k["ecg"] + n(1.5)), 2),
        }

    def _ventilator_real(self, t: int, dt: float, u: float, env: Environment,
                         sev: dict[str, float], prog: dict[str, float]) -> dict[str, float]:
        k, rng, n = self.k, self.rng, self._rn
        bearing, b_p = sev.get("turbine_bearing_wear", 0.0), prog.get("turbine_bearing_wear", 0.0)
        drift, d_p = sev.get("o2_cell_drift", 0.0), prog.get("o2_cell_drift", 0.0)
        demand = u * (0.8 + 0.4 * rng.random())  # each patient needs a different flow
        # The prescribed oxygen changes with the patient, every few hours.
        block = t // 14_400_000
        if block != self._fio2_block:
            self._fio2_block = block
            self._fio2 = 21.0 + 59.0 * rng.random() ** 2
        fio2 = self._fio2
        speed = 18_000 * k["sp"] + 16_000 * demand + n(150.0 * (1 + 3 * b_p))
        breath_phase = (t / 1000.0) % 4.0 / 4.0
        airway = 5.0 * k["aw"] + 20.0 * max(0.0, math.sin(math.pi * breath_phase * 2.5)) * demand
        return {
            "turbine_speed_rpm": round(speed, 0),
            "turbine_temp_c": round(env.ambient_c + 14.0 * k["tt"] + 10.0 * demand
                                    + 2.5 * bearing + n(0.4 * (1 + b_p)), 2),
            "turbine_vibration_mm_s": round(abs((0.45 + 0.5 * (speed / 34_000) ** 2) * k["vib"]
                                                + 0.12 * bearing
                                                + n(0.08 * (1 + 3 * b_p))), 3),
            "o2_cell_mv": round(1.45 * k["o2"] * (1.0 - 0.2 * drift) * fio2
                                + n(0.3 * (1 + 2 * d_p)), 2),
            "fio2_measured_pct": round(fio2 * (1.0 - 0.04 * drift) + n(0.4 * (1 + 2 * d_p)), 2),
            "airway_pressure_cmh2o": round(airway + n(0.5), 2),
        }

    def _ct_real(self, t: int, dt: float, u: float, env: Environment,
                 sev: dict[str, float], prog: dict[str, float]) -> dict[str, float]:
        st, k, rng, n = self.state, self.k, self.rng, self._rn
        tube, t_p = sev.get("tube_ageing", 0.0), prog.get("tube_ageing", 0.0)
        anode, a_p = sev.get("anode_bearing_wear", 0.0), prog.get("anode_bearing_wear", 0.0)
        scanning = rng.random() < u * 0.6
        st.tube_heat += ((1.0 if scanning else 0.0) - st.tube_heat) * min(1.0, dt / 600.0)
        arcs = _poisson(rng, k["arc"] * (0.05 + 0.6 * tube) * (0.2 + u))
        if scanning:
            # A tube that stood idle for a day and a half arcs while it seasons: benign.
            if self._last_scan_ms is not None and t - self._last_scan_ms > 1.5 * DAY_MS:
                arcs += _poisson(rng, 3.0)
            self._last_scan_ms = t
        return {
            "tube_temp_c": round(45.0 * k["t0"] + 70.0 * st.tube_heat + 5.0 * tube
                                 + n(0.8 * (1 + t_p)), 2),
            "oil_temp_c": round(env.ambient_c + 12.0 * k["oil"] + 25.0 * st.tube_heat
                                + 1.5 * tube * st.tube_heat + n(0.3), 2),
            "tube_current_ma": round((250.0 + rng.uniform(0, 250.0)) * (1 - 0.03 * tube)
                                     if scanning else 0.0, 1),
            "anode_rotation_hz": round((150.0 if scanning else 60.0) * k["an"]
                                       * (1.0 - 0.012 * anode) + n(0.5 * (1 + 4 * a_p)), 2),
            "arcs_per_hour": float(arcs),
            "gantry_vibration_mm_s": round(abs(1.1 * k["gv"] + (0.6 if scanning else 0.0)
                                               + 0.25 * anode + n(0.1 * (1 + 3 * a_p))), 3),
            "scans_per_hour": float(_poisson(rng, 14.0 * u)),
        }

    def _mri_real(self, t: int, dt: float, u: float, env: Environment,
                  sev: dict[str, float], prog: dict[str, float]) -> dict[str, float]:
        st, k, n = self.state, self.k, self._rn
        cold, c_p = sev.get("cold_head_decline", 0.0), prog.get("cold_head_decline", 0.0)
        comp, m_p = sev.get("compressor_failure", 0.0), prog.get("compressor_failure", 0.0)
        # The chilled water follows the room, and the cold head follows the chilled water.
        warm = env.ambient_c - self.site.ambient_c
        loss = max(0.0, cold - 0.5) + max(0.0, comp - 0.5)
        st.helium_pct = max(0.0, st.helium_pct - 0.3 * loss * dt / DAY_S)
        return {
            "helium_level_pct": round(st.helium_pct * k["he"] - 0.04 * warm
                                      + n(0.08), 3),
            "cold_head_temp_k": round(4.05 * k["ch"] + 0.04 * u + 0.08 * warm + 0.25 * cold
                                      + 0.15 * comp + n(0.02 * (1 + 2 * max(c_p, m_p))), 3),
            "compressor_current_a": round(11.5 * k["cc"] + 1.0 * u + 0.04 * warm + 0.3 * comp
                                          + n(0.15 * (1 + 3 * m_p)), 3),
            "magnet_pressure_psi": round(1.2 * k["mp"] + 0.03 * warm + 0.1 * loss + 0.08 * cold
                                         + n(0.01), 3),
            "gradient_coil_temp_c": round(env.ambient_c + 6.0 * k["gc"] + 14.0 * u + n(0.3), 2),
        }
