"""Failure prediction for the fleet: remaining life, P(failure within a horizon), band, drivers,
fault type; one model pooled over the device models, stored as plain parameters.

Pure: it learns from the rows of :mod:`analytics.prediction.lives` and predicts from one.

- **Target.** Remaining life in days, capped at ``cap_days``: well before a failure nothing
  in the readings says how far away it is. A censored row (its device did not fail before the
  data ended) is used whenever its capped target is known, that is when the device was still
  seen working ``cap_days`` later; only a censored life's last ``cap_days`` are left out.
- **Model.** Ridge regression on how abnormal each reading is (``log1p`` of the absolute
  level, spread, relation and noise scores, the share missing), plus the strongest of each kind over
  all readings and the device model as a one-hot column. The readings' scores are relative to
  each device's own baseline, so one pooled model serves every device model and the few
  failures of each pool their strength; the one-hot columns, shrunk like any ridge weight,
  let a model with enough history shift the prediction. A linear model's weights are plain
  numbers (the registry stores no code) and its contributions add up exactly.
- **Band.** Out-of-fold predictions on held-out groups of devices give the
  residuals (true capped life minus predicted), by quantile bin of the prediction, on every
  row with a known target (healthy rows included); the band is their central ``coverage``
  quantiles (:func:`analytics.prediction.rul.band`). A device model with at least
  ``min_failures`` failures gets residuals of its own; one with fewer uses the pooled ones and
  says so in :attr:`Assessment.basis`, with how many failures it had.
- **Probability.** A logistic regression of failing within the horizon on the same inputs
  (:func:`fit_hazard`), learned from every row whose outcome is known, censored ones
  included: fitted to that outcome, it ranks the days before failures above healthy ones
  better than the life's residuals do (``probability_model="residuals"``: the share of the
  residuals that put the failure within the horizon,
  :func:`~analytics.prediction.rul.failure_probability`). A device model with fewer than
  ``min_failures`` failures in the training data gets the probability of a second, shared
  regression on the strongest-of-a-kind columns alone (``shared_hazard``): how far any of a
  device's readings moved, in its own baseline's spreads, means the same on every model, while
  the weights of a reading only one model has are learned from that model's failures, of which
  it has too few. On the fleet bench's training fleets (seeds 11 and 21, out of fold) this
  ticketed 6 and 11 of 8 and 11 predictable failures at least 24 h ahead instead of 4 and 7,
  at the same false-ticket budget; a CT with no failure to learn from had scored 0.001 while
  its gantry vibration climbed for two weeks. With a fault catalogue, the shared regression
  also reads the catalogue's evidence (:func:`catalogue_evidence`): how far the readings the
  model's failure modes show in moved, in healthy spreads, whatever kind of score moved.
  Trained on seed 61's fleet and judged on seed 62's (prediction tickets alone, the
  probability chosen out of fold), it ticketed 11 of 12 predictable failures at least 24 h
  ahead with 6 false tickets, where the strongest-of-a-kind columns alone ticketed 9 with
  27; on seeds 41/42 and 51/52 both ticketed the same failures (9 of 9, 6 of 8) with 31 and
  32 false tickets against 29 and 34. The basis says which regression spoke.
- **Drivers.** Each reading's contribution in days of life: its features' weights times
  their distance from healthy rows' median; the strongest-of-a-kind column counts for the
  reading that was the strongest. The device model's column is not a reading and no column
  measures age.
- **Fault type.** Per device model with two fault types or more seen, a multinomial
  logistic regression (:func:`fit_fault_classifier`) on which way and how far each reading's
  scores moved in the last ``horizon_days`` before failures; otherwise the nearest centroid
  of the signed readings' scores, among the types seen on the device's model
  (all types if it has none). With a fault catalogue (:mod:`analytics.prediction.catalogue`,
  the maker's knowledge of which readings each failure mode shows in), that learned answer
  is one of two opinions (:func:`combine_fault`): only the model's own fault codes are named,
  the learned probabilities are mixed with an even split over them (``fault_doubt``: a few
  failures per model teach little), and each fault's odds grow with how far its catalogue
  readings moved (``fault_evidence``, per robust standard deviation of that reading's score
  among healthy rows: :attr:`FailurePredictor.moved`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analytics.prediction.catalogue import FaultCatalogue, FaultMode
from analytics.prediction.catalogue import parse as parse_catalogue
from analytics.prediction.lives import KINDS, SEPARATOR, kind_of, metric_of
from analytics.prediction.metrics import brier_score, interval_coverage
from analytics.prediction.rul import band, failure_probability, residual_bins

POOLED = "*"
OTHER = ""  # the shared fault classifier's class for a type of one device model only
STRONGEST = "*"  # the reading prefix of the strongest-of-a-kind columns
MODEL_PREFIX = "model="
# Residuals kept per bin: quantiles of the out-of-fold residuals, enough for a probability
# to within half a percent.
KEPT_RESIDUALS = 201


@dataclass(frozen=True)
class PredictorSettings:
    horizon_days: float = 7.0
    cap_days: float = 30.0
    coverage: float = 0.8
    folds: int = 5
    # Bins of the residuals by predicted life. 5, 10 and 20 bins gave a cross-validated Brier
    # score of 0.0235, 0.0231 and 0.0229 on `vigil bench prediction`'s training fleet (seed 1):
    # within noise; 5 keeps a device model's own bins estimated from enough rows.
    bins: int = 5
    alpha: float = 1.0
    min_failures: int = 3
    top_drivers: int = 3
    # Inverse strength of the fault classifier's L2 penalty.
    fault_c: float = 0.1
    # The probability: "residuals" of the predicted life, or a "logistic" regression of the
    # horizon's outcome on the same inputs. On `vigil bench prediction` (train/eval seeds 1/2,
    # 3/4, 5/6; 1-day noise window, hazard_c 0.1) the logistic one gave Brier 0.0103, 0.0111,
    # 0.0099 against 0.0134, 0.0128, 0.0118, and alarmed 0.70, 0.61, 0.83 of the predictable
    # failures >= 24 h ahead at 0.5 false alarms per 100 device-days against 0.70, 0.44, 0.78.
    probability_model: str = "logistic"
    # Inverse strength of the hazard regression's L2 penalty: 0.5, 0.1, 0.02 and 0.005 gave a
    # cross-validated AUC of 0.754, 0.777, 0.814 and 0.827 and Brier of 0.0207, 0.0202, 0.0204
    # and 0.0213 on the training fleet (seed 1); 0.02 keeps the Brier score.
    hazard_c: float = 0.02
    # With a fault catalogue: the share of the learned fault probabilities replaced by an even
    # split over the model's catalogue faults, and the log-odds a fault gains per robust
    # standard deviation its readings moved. Chosen on the training fleet of `vigil bench
    # fleet` (seed 11), leaving out one failed device at a time (9), on its rows within 14
    # days of the failure: doubt 0, 0.5, 1 with evidence 1 named 0.698, 0.690, 0.698 right;
    # evidence 0.25, 0.5, 1, 3 with doubt 0.5: 0.643, 0.659, 0.690, 0.698; the learned
    # answer alone 0.222 (of 126 rows). Within two rows of each other; 0.5 and 1 keep both
    # opinions.
    fault_doubt: float = 0.5
    fault_evidence: float = 1.0


@dataclass(frozen=True)
class Assessment:
    """A device's prediction, ready for a ``predictions`` row."""

    rul_days: float
    rul_lower_days: float
    rul_upper_days: float
    probability: float
    horizon_days: float
    drivers: dict[str, float]
    fault_type: str | None
    basis: dict[str, Any] = field(default_factory=dict)


def capped_target(rows: pd.DataFrame, cap: float) -> np.ndarray:
    """Each row's remaining life capped at ``cap``; NaN where unknown (censored too soon)."""
    left = rows["left_days"].to_numpy(dtype=float)
    failed = rows["failed"].to_numpy(dtype=bool)
    return np.where(failed, np.minimum(left, cap), np.where(left >= cap, cap, np.nan))


def horizon_outcome(rows: pd.DataFrame, horizon: float) -> np.ndarray:
    """1 if the row's device failed within ``horizon``, 0 if it was seen working past it, NaN."""
    left = rows["left_days"].to_numpy(dtype=float)
    failed = rows["failed"].to_numpy(dtype=bool)
    return np.where(failed & (left <= horizon), 1.0,
                    np.where(left > horizon, 0.0, np.nan))


def reading_features(rows: pd.DataFrame) -> list[str]:
    return sorted(c for c in rows.columns if SEPARATOR in c and kind_of(c) in KINDS
                  and not c.startswith(STRONGEST + SEPARATOR))


def design(rows: pd.DataFrame, features: list[str], models: list[str]) -> np.ndarray:
    """The regression inputs: see :func:`design_columns` for their names."""
    raw = rows.reindex(columns=features).to_numpy(dtype=float)
    raw = np.nan_to_num(raw, nan=0.0)
    kinds = [kind_of(f) for f in features]
    x = np.where(np.array([k == "missing" for k in kinds]), raw, np.log1p(np.abs(raw)))
    strongest = []
    for kind in KINDS:
        columns = [j for j, k in enumerate(kinds) if k == kind]
        strongest.append(x[:, columns].max(axis=1) if columns else np.zeros(len(rows)))
    model = rows["model"].astype(str).to_numpy()
    onehot = [(model == m).astype(float) for m in models]
    return np.column_stack([x, *strongest, *onehot]) if len(rows) else np.zeros(
        (0, len(features) + len(KINDS) + len(models)))


def design_columns(features: list[str], models: list[str]) -> list[str]:
    return ([*features, *(f"{STRONGEST}{SEPARATOR}{k}" for k in KINDS),
             *(f"{MODEL_PREFIX}{m}" for m in models)])


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray, float]:
    """Standardised ridge regression: (mean, scale, weights, intercept)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (y - y.mean()))
    return mean, scale, weights, float(y.mean())


def _device_folds(devices: np.ndarray, folds: int) -> np.ndarray:
    """Fold of each row: whole devices held out together, spread evenly by name order."""
    names = np.array(sorted(set(devices.tolist())))
    fold_of = {name: i % folds for i, name in enumerate(names)}
    return np.array([fold_of[d] for d in devices])


def _kept(residuals: np.ndarray) -> list[float]:
    if len(residuals) <= KEPT_RESIDUALS:
        return [float(r) for r in residuals]
    return [float(r) for r in np.quantile(residuals, np.linspace(0, 1, KEPT_RESIDUALS))]


def _calibration(predicted: np.ndarray, truth: np.ndarray, bins: int) -> dict[str, Any]:
    edges, residuals = residual_bins(predicted, truth, bins)
    return {"edges": [float(e) for e in edges], "residuals": [_kept(r) for r in residuals],
            "rows": int(len(truth))}


@dataclass
class FailurePredictor:
    """A fitted predictor: everything is plain numbers and names (see :meth:`to_params`)."""

    settings: PredictorSettings
    features: list[str]
    models: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    reference: np.ndarray
    calibration: dict[str, dict[str, Any]]
    history: dict[str, dict[str, int]]
    fault_features: list[str]
    fault_scale: np.ndarray
    centroids: dict[str, np.ndarray]
    fault_models: dict[str, list[str]]
    # Per device model with two fault types or more seen: a linear classifier (see
    # :func:`fit_fault_classifier`); the centroids serve the others.
    fault_classifiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A logistic regression of failing within the horizon (see :func:`fit_hazard`); without
    # it the probability comes from the residuals of the predicted life. ``shared_hazard``:
    # the same on the strongest-of-a-kind columns alone, for device models with few failures.
    hazard: dict[str, Any] = field(default_factory=dict)
    shared_hazard: dict[str, Any] = field(default_factory=dict)
    # The fault catalogue the fault type is named with (none: by what was learned alone), and
    # per reading feature the healthy rows' median and robust spread of its size, which say
    # how far a reading moved (:meth:`moved`).
    catalogue: FaultCatalogue | None = None
    healthy_center: np.ndarray = field(default_factory=lambda: np.zeros(0))
    healthy_spread: np.ndarray = field(default_factory=lambda: np.zeros(0))

    # -- predicting ---------------------------------------------------------------------------

    def predict_rul(self, rows: pd.DataFrame) -> np.ndarray:
        x = design(rows, self.features, self.models)
        z = (x - self.mean) / self.scale
        return np.clip(z @ self.weights + self.intercept, 0.0, self.settings.cap_days)

    def _group(self, model: str) -> str:
        return model if model in self.calibration else POOLED

    def shared_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Per row, whether its probability comes from the shared regression."""
        if not (self.hazard and self.shared_hazard):
            return np.zeros(len(rows), dtype=bool)
        return few_failures(self.history, rows, self.settings.min_failures)

    def probability(self, rows: pd.DataFrame, predicted: np.ndarray, *,
                    moved: Sequence[Mapping[str, float]] | None = None) -> np.ndarray:
        """P(failure within the horizon): by the hazard regression if there is one (the shared
        one for a device model with few failures), else the share of ``predicted``'s residual
        distribution within the horizon."""
        if self.hazard:
            shared = self.shared_rows(rows)
            evidence = (self.evidence(rows, moved=moved) if shared.any()
                        and self.shared_hazard.get("inputs") == EVIDENCE_INPUTS else None)
            return hazard_probabilities(self.hazard, self.shared_hazard, rows, self.features,
                                        self.models, shared=shared, evidence=evidence)
        out = np.zeros(len(rows))
        groups = np.array([self._group(str(m)) for m in rows["model"]])
        for group in set(groups.tolist()):
            mask = groups == group
            cal = self.calibration[group]
            out[mask] = failure_probability(
                predicted[mask], np.asarray(cal["edges"]),
                [np.asarray(r) for r in cal["residuals"]], self.settings.horizon_days)
        return out

    def band(self, rows: pd.DataFrame, predicted: np.ndarray, coverage: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The central ``coverage`` band of the residual distribution around each prediction;
        ``coverage`` 0 gives its median twice."""
        coverage = self.settings.coverage if coverage is None else coverage
        lower, upper = np.zeros(len(rows)), np.zeros(len(rows))
        groups = np.array([self._group(str(m)) for m in rows["model"]])
        for group in set(groups.tolist()):
            mask = groups == group
            cal = self.calibration[group]
            lower[mask], upper[mask] = band(
                predicted[mask], np.asarray(cal["edges"]),
                [np.asarray(r) for r in cal["residuals"]], coverage)
        return lower, upper

    def contributions(self, rows: pd.DataFrame) -> list[dict[str, float]]:
        """Per row, days of life each reading adds (negative: it shortens the predicted life)."""
        x = design(rows, self.features, self.models)
        parts = (x - self.reference) / self.scale * self.weights
        columns = design_columns(self.features, self.models)
        raw = x[:, :len(self.features)]
        # A reading the device does not have (another model's) contributes nothing.
        present = np.isfinite(rows.reindex(columns=self.features).to_numpy(dtype=float))
        kinds = [kind_of(f) for f in self.features]
        out = []
        for i in range(len(rows)):
            per: dict[str, float] = {}
            for j, name in enumerate(columns):
                if name.startswith(MODEL_PREFIX) or (j < len(self.features)
                                                     and not present[i, j]):
                    continue
                if name.startswith(STRONGEST + SEPARATOR):
                    kind = kind_of(name)
                    candidates = [k for k, kk in enumerate(kinds) if kk == kind]
                    if not candidates:
                        continue
                    metric = metric_of(self.features[max(candidates, key=lambda k: raw[i, k])])
                else:
                    metric = metric_of(name)
                per[metric] = per.get(metric, 0.0) + float(parts[i, j])
            out.append(per)
        return out

    def fault_type(self, rows: pd.DataFrame, *,
                   moved: Sequence[Mapping[str, float]] | None = None) -> list[str | None]:
        """Each row's likely fault code: by the catalogue and what was learned together where
        the catalogue knows the device's model, else by what was learned alone. ``moved``:
        :meth:`moved` of ``rows``, if the caller has it."""
        if self.catalogue is None or not len(self.healthy_spread):
            return [_most_likely(p) for p in self.learned_faults(rows)]
        # A model with one fault type seen or none has learned nothing that tells its faults
        # apart: the nearest centroid would name the one it saw whatever the readings say.
        learned = self.learned_faults(rows, centroids=False)
        models = rows["model"].astype(str).tolist()
        alone = (self.learned_faults(rows) if any(not self.catalogue.of(m) for m in models)
                 else learned)
        moved = self.moved(rows) if moved is None else moved
        out: list[str | None] = []
        for i, model in enumerate(models):
            modes = self.catalogue.of(model)
            if not modes:
                out.append(_most_likely(alone[i]))
                continue
            out.append(combine_fault(modes, learned[i], moved[i],
                                     doubt=self.settings.fault_doubt,
                                     evidence=self.settings.fault_evidence))
        return out

    def moved(self, rows: pd.DataFrame) -> list[dict[str, float]]:
        """Per row, how far each reading moved (see :func:`moved_readings`)."""
        return moved_readings(rows, self.features, self.healthy_center, self.healthy_spread)

    def evidence(self, rows: pd.DataFrame, *,
                 moved: Sequence[Mapping[str, float]] | None = None) -> np.ndarray | None:
        """Per row, how far its model's catalogue faults show (see :func:`catalogue_evidence`);
        None without a catalogue. ``moved``: :meth:`moved` of ``rows``, if the caller has it."""
        if self.catalogue is None or not len(self.healthy_spread):
            return None
        return catalogue_evidence(self.catalogue, rows,
                                  self.moved(rows) if moved is None else moved)

    def learned_faults(self, rows: pd.DataFrame, *, centroids: bool = True
                       ) -> list[dict[str, float]]:
        """Per row, the probability of each fault code by what was learned from the fleet's
        failures alone: a device model's own classifier's, else all on the one fault the
        shared classifier or (with ``centroids``) the nearest centroid names; empty when
        nothing was learned."""
        if not self.centroids:
            return [{} for _ in range(len(rows))]
        x = np.nan_to_num(rows.reindex(columns=self.fault_features).to_numpy(dtype=float))
        z = x / self.fault_scale
        out: list[dict[str, float]] = []
        models = rows["model"].astype(str).to_numpy()
        classified = {m: fault_probabilities(self.fault_classifiers[m], rows[models == m])
                      for m in set(models.tolist()) if m in self.fault_classifiers}
        shared = self.fault_classifiers.get(POOLED)
        common = classify_faults(shared, rows) if shared else [OTHER] * len(rows)
        seen = dict.fromkeys(classified, 0)
        for i, model in enumerate(models):
            if common[i] != OTHER and common[i] not in self.fault_models.get(model, ()):
                # A fault type of several device models, never seen on this one: only the
                # readings every model shares can tell it.
                out.append({common[i]: 1.0})
                if model in classified:
                    seen[model] += 1
                continue
            if model in classified:
                out.append(classified[model][seen[model]])
                seen[model] += 1
                continue
            if not centroids:
                out.append({})
                continue
            allowed = self.fault_models.get(model) or sorted(self.centroids)
            distance = {f: float(np.sum((z[i] - self.centroids[f]) ** 2)) for f in allowed}
            out.append({min(distance, key=lambda f: (distance[f], f)): 1.0})
        return out

    def assess(self, rows: pd.DataFrame) -> list[Assessment]:
        """An assessment for each row (a device's latest window)."""
        predicted = self.predict_rul(rows)
        # How far each reading moved serves the probability and the fault type: read it once.
        moved = (self.moved(rows) if self.catalogue is not None and len(self.healthy_spread)
                 else None)
        probability = self.probability(rows, predicted, moved=moved)
        cap = self.settings.cap_days
        # The band's ends are capped too: an upper end at the cap reads "the cap or more".
        lower, upper = (np.minimum(b, cap) for b in self.band(rows, predicted))
        # The life reported is the residual distribution's median, so it lies inside its band:
        # a healthy device's capped prediction sits below the cap, its residuals above it.
        median = np.minimum(self.band(rows, predicted, coverage=0.0)[0], cap)
        faults = self.fault_type(rows, moved=moved)
        shared = self.shared_rows(rows)
        out = []
        for i, (per, model) in enumerate(zip(self.contributions(rows), rows["model"].astype(str),
                                             strict=True)):
            down = sorted((v, k) for k, v in per.items() if v < 0)[: self.settings.top_drivers]
            history = self.history.get(model, {"failures": 0, "devices": 0})
            out.append(Assessment(
                rul_days=float(median[i]), rul_lower_days=float(lower[i]),
                rul_upper_days=float(upper[i]), probability=float(probability[i]),
                horizon_days=self.settings.horizon_days,
                drivers={k: round(v, 2) for v, k in down}, fault_type=faults[i],
                basis={"model_failures": history["failures"], "model_devices": history["devices"],
                       "calibration": "own" if self._group(model) == model else "pooled",
                       "probability": "shared" if shared[i] else "own",
                       "capped_at_days": self.settings.cap_days,
                       "coverage": self.settings.coverage}))
        return out

    # -- plain parameters ----------------------------------------------------------------------

    def to_params(self) -> dict[str, Any]:
        s = self.settings
        return {
            "class": "analytics.prediction.failure.FailurePredictor",
            "settings": {k: getattr(s, k) for k in s.__dataclass_fields__},
            "features": list(self.features), "models": list(self.models),
            "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "weights": self.weights.tolist(), "intercept": self.intercept,
            "reference": self.reference.tolist(), "calibration": self.calibration,
            "history": self.history, "fault_features": list(self.fault_features),
            "fault_scale": self.fault_scale.tolist(),
            "centroids": {k: v.tolist() for k, v in self.centroids.items()},
            "fault_models": self.fault_models, "fault_classifiers": self.fault_classifiers,
            "hazard": self.hazard, "shared_hazard": self.shared_hazard,
            "catalogue": None if self.catalogue is None else self.catalogue.to_document(),
            "healthy_center": self.healthy_center.tolist(),
            "healthy_spread": self.healthy_spread.tolist(),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FailurePredictor:
        """Rebuild from :meth:`to_params`: numbers and names only, nothing is imported or run."""
        if params.get("class") != "analytics.prediction.failure.FailurePredictor":
            raise ValueError(f"not failure-predictor parameters: {params.get('class')!r}")

        def array(name: str) -> np.ndarray:
            return np.asarray(params[name], dtype=float)

        return cls(
            settings=PredictorSettings(**params["settings"]),
            features=[str(f) for f in params["features"]],
            models=[str(m) for m in params["models"]], mean=array("mean"),
            scale=array("scale"), weights=array("weights"),
            intercept=float(params["intercept"]), reference=array("reference"),
            calibration={str(k): dict(v) for k, v in params["calibration"].items()},
            history={str(k): {str(a): int(b) for a, b in v.items()}
                     for k, v in params["history"].items()},
            fault_features=[str(f) for f in params["fault_features"]],
            fault_scale=array("fault_scale"),
            centroids={str(k): np.asarray(v, dtype=float)
                       for k, v in params["centroids"].items()},
            fault_models={str(k): [str(f) for f in v] for k, v in params["fault_models"].items()},
            fault_classifiers={str(k): _classifier_params(v) for k, v in params.get(
                "fault_classifiers", {}).items()},
            hazard=_hazard_params(params["hazard"]) if params.get("hazard") else {},
            # Versions stored before the shared regression use their own for every model.
            shared_hazard=(_hazard_params(params["shared_hazard"])
                           if params.get("shared_hazard") else {}),
            # Versions stored before the catalogue name the fault by what they learned alone.
            catalogue=parse_catalogue(params["catalogue"]) if params.get("catalogue") else None,
            healthy_center=np.asarray(params.get("healthy_center", []), dtype=float),
            healthy_spread=np.asarray(params.get("healthy_spread", []), dtype=float),
        )


# -- fitting ----------------------------------------------------------------------------------


def _fit_once(rows: pd.DataFrame, target: np.ndarray, features: list[str], models: list[str],
              settings: PredictorSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    return ridge(design(rows, features, models), target, settings.alpha)


def _predict(fitted: tuple[np.ndarray, np.ndarray, np.ndarray, float], rows: pd.DataFrame,
             features: list[str], models: list[str], cap: float) -> np.ndarray:
    mean, scale, weights, intercept = fitted
    z = (design(rows, features, models) - mean) / scale
    return np.clip(z @ weights + intercept, 0.0, cap)


ALL_INPUTS = "all"
SHARED_INPUTS = "strongest"  # a hazard on the strongest-of-a-kind columns alone
# A hazard on the catalogue's evidence (:func:`catalogue_evidence`) and the strongest-of-a-kind
# columns: how far the readings a model's failure modes show in moved, in healthy spreads.
EVIDENCE_INPUTS = "evidence"
HAZARD_INPUTS = (ALL_INPUTS, SHARED_INPUTS, EVIDENCE_INPUTS)


def _hazard_params(document: Mapping[str, Any]) -> dict[str, Any]:
    inputs = str(document.get("inputs", ALL_INPUTS))
    if inputs not in HAZARD_INPUTS:
        raise ValueError(f"unknown hazard inputs {inputs!r}")
    return {key: [float(v) for v in document[key]] for key in ("mean", "scale", "coef")} | {
        "intercept": float(document["intercept"]), "inputs": inputs}


def _hazard_design(rows: pd.DataFrame, features: list[str], models: list[str], inputs: str,
                   evidence: np.ndarray | None = None) -> np.ndarray:
    x = design(rows, features, models)
    if inputs == ALL_INPUTS:
        return x
    strongest = x[:, len(features):len(features) + len(KINDS)]
    if inputs == SHARED_INPUTS:
        return strongest
    if evidence is None or len(evidence) != len(rows):
        raise ValueError("this hazard reads the catalogue's evidence of every row")
    return np.column_stack([np.log1p(np.maximum(evidence, 0.0)), strongest])


def fit_hazard(rows: pd.DataFrame, features: list[str], models: list[str], *, horizon: float,
               c: float, inputs: str = ALL_INPUTS, evidence: np.ndarray | None = None
               ) -> dict[str, Any]:
    """A logistic regression of failing within ``horizon`` on :func:`design` (or, with
    ``inputs`` ``SHARED_INPUTS``, on its strongest-of-a-kind columns; ``EVIDENCE_INPUTS``,
    on those and ``evidence``, per row), as plain numbers; empty when the rows hold no
    failure within it (or nothing else)."""
    from sklearn.linear_model import LogisticRegression

    outcome = horizon_outcome(rows, horizon)
    decided = np.isfinite(outcome)
    y = outcome[decided]
    if len(set(y.tolist())) < 2:
        return {}
    x = _hazard_design(rows[decided], features, models, inputs,
                       None if evidence is None else evidence[decided])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fitted = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
    return _hazard_params({"mean": mean.tolist(), "scale": scale.tolist(),
                           "coef": fitted.coef_[0].tolist(),
                           "intercept": float(fitted.intercept_[0]), "inputs": inputs})


def hazard_probability(hazard: Mapping[str, Any], rows: pd.DataFrame, features: list[str],
                       models: list[str], evidence: np.ndarray | None = None) -> np.ndarray:
    x = _hazard_design(rows, features, models, str(hazard.get("inputs", ALL_INPUTS)), evidence)
    z = (x - np.asarray(hazard["mean"])) / np.asarray(hazard["scale"])
    return np.asarray(1.0 / (1.0 + np.exp(-(z @ np.asarray(hazard["coef"])
                                             + float(hazard["intercept"])))))


def hazard_probabilities(hazard: Mapping[str, Any], shared_hazard: Mapping[str, Any],
                         rows: pd.DataFrame, features: list[str], models: list[str], *,
                         shared: np.ndarray | None, evidence: np.ndarray | None = None
                         ) -> np.ndarray:
    """:func:`hazard_probability` by ``hazard``, and by ``shared_hazard`` for the rows
    ``shared`` marks (none if None); ``evidence``, per row of ``rows``, if it reads it."""
    out = hazard_probability(hazard, rows, features, models)
    if shared is not None and shared.any():
        out[shared] = hazard_probability(shared_hazard, rows[shared], features, models,
                                         None if evidence is None else evidence[shared])
    return out


def moved_readings(rows: pd.DataFrame, features: list[str], center: np.ndarray,
                   spread: np.ndarray) -> list[dict[str, float]]:
    """Per row, how far each reading moved: the largest over its kinds of score of the
    score's size above the healthy rows' median (``center``), in their robust spreads
    (``spread``; see :func:`healthy_sizes`), 0 if below."""
    raw = rows.reindex(columns=features).to_numpy(dtype=float)
    present = np.isfinite(raw)
    kinds = np.array([kind_of(f) == "missing" for f in features])
    size = np.where(kinds, np.nan_to_num(raw), np.log1p(np.abs(np.nan_to_num(raw))))
    z = np.where(present, (size - center) / spread, 0.0)
    metrics = [metric_of(f) for f in features]
    out = []
    for row in z:
        per: dict[str, float] = {}
        for metric, value in zip(metrics, row, strict=True):
            per[metric] = max(per.get(metric, 0.0), float(value))
        out.append(per)
    return out


def catalogue_evidence(catalogue: FaultCatalogue, rows: pd.DataFrame,
                       moved: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Per row, how far the failure mode of its device model that shows most shows
    (:meth:`FaultMode.shown` of ``moved``, per row); 0 for a model the catalogue does not know.

    Measured in healthy spreads of each reading's scores, it means the same on every model,
    and it reads only the readings a failure shows in, not the room's: the shared hazard
    learns its weight from the failures of any model. On the fleet bench's training fleet of
    seed 61 (mostly pumps' motor wear, seen in noise), the strongest-of-a-kind columns alone
    had learned that a relation that moved speaks against a failure, and scored an MRI whose
    cold head's relation to its room climbed for two weeks below 0.07 throughout."""
    out = np.zeros(len(rows))
    for i, (per, model) in enumerate(zip(moved, rows["model"].astype(str), strict=True)):
        out[i] = max((mode.shown(per) for mode in catalogue.of(model)), default=0.0)
    return out


def fault_signs(rows: pd.DataFrame, features: list[str], *, summaries: bool = False
                ) -> np.ndarray:
    """What a fault classifier reads: each feature signed (which way a reading moved) and its
    size (how far); with ``summaries`` also each kind's mean and largest size over all of the
    row's readings, so that a noise rising on every reading differs from one reading's."""
    raw = np.nan_to_num(rows.reindex(columns=features).to_numpy(dtype=float))
    size = np.log1p(np.abs(raw))
    out = [np.sign(raw) * size, size]
    if summaries:
        every = reading_features(rows)
        values = np.log1p(np.abs(rows.reindex(columns=every).to_numpy(dtype=float)))
        kinds = np.array([kind_of(f) for f in every])
        for kind in KINDS:
            of_kind = values[:, kinds == kind] if len(every) else np.zeros((len(rows), 0))
            if not of_kind.shape[1]:
                out += [np.zeros(len(rows)), np.zeros(len(rows))]
                continue
            present = np.isfinite(of_kind)
            filled = np.where(present, of_kind, 0.0)
            count = present.sum(axis=1)
            out += [filled.sum(axis=1) / np.maximum(count, 1), filled.max(axis=1)]
    return np.column_stack(out)


def _classifier_params(document: Mapping[str, Any]) -> dict[str, Any]:
    return {"features": [str(f) for f in document["features"]],
            "summaries": bool(document.get("summaries", False)),
            "classes": [str(c) for c in document["classes"]],
            "mean": [float(v) for v in document["mean"]],
            "scale": [float(v) for v in document["scale"]],
            "coef": [[float(v) for v in row] for row in document["coef"]],
            "intercept": [float(v) for v in document["intercept"]]}


def fit_fault_classifier(rows: pd.DataFrame, labels: np.ndarray, *, c: float,
                         features: list[str] | None = None, summaries: bool = False
                         ) -> dict[str, Any] | None:
    """A multinomial logistic regression of the fault type on rows, as plain numbers; None
    with fewer than two fault types. ``features``: those of the readings the rows have."""
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        return None
    if features is None:
        features = [f for f in reading_features(rows) if rows[f].notna().any()]
    x = fault_signs(rows, features, summaries=summaries)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fitted = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(
        (x - mean) / scale, labels)
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: the second's odds
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return _classifier_params({"features": features, "summaries": summaries,
                               "classes": list(fitted.classes_), "mean": mean.tolist(),
                               "scale": scale.tolist(), "coef": coef.tolist(),
                               "intercept": intercept.tolist()})


def fault_probabilities(classifier: Mapping[str, Any], rows: pd.DataFrame
                        ) -> list[dict[str, float]]:
    """Each row's probability of each fault type by a :func:`fit_fault_classifier` classifier."""
    x = fault_signs(rows, list(classifier["features"]), summaries=classifier["summaries"])
    z = (x - np.asarray(classifier["mean"])) / np.asarray(classifier["scale"])
    scores = z @ np.asarray(classifier["coef"]).T + np.asarray(classifier["intercept"])
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    classes = [str(c) for c in classifier["classes"]]
    return [dict(zip(classes, (float(v) for v in row), strict=True)) for row in scores]


def classify_faults(classifier: Mapping[str, Any], rows: pd.DataFrame) -> list[str]:
    """The most likely fault type of each row by a :func:`fit_fault_classifier` classifier."""
    return [str(_most_likely(p)) for p in fault_probabilities(classifier, rows)]


def _most_likely(probabilities: Mapping[str, float]) -> str | None:
    """The likeliest of ``probabilities``' faults, the first by name on a tie; None if empty."""
    return max(sorted(probabilities), key=probabilities.__getitem__, default=None)


def combine_fault(modes: Sequence[FaultMode], learned: Mapping[str, float],
                  moved: Mapping[str, float], *, doubt: float, evidence: float) -> str:
    """The likeliest of a device model's failure ``modes`` (its catalogue entries).

    ``learned``: fault code -> probability by what the fleet's failures taught (codes outside
    ``modes`` are dropped; empty: nothing learned). It is mixed with an even split over
    ``modes``, ``doubt`` of it; then each mode's odds are multiplied by ``exp(evidence *
    moved)`` of the furthest its readings moved (``moved``: reading -> robust deviations).
    """
    if not modes:
        raise ValueError("no failure modes to choose from")
    own = {m.code: float(learned.get(m.code, 0.0)) for m in modes}
    total = sum(own.values())
    share = doubt if total > 0 else 1.0
    scores = {}
    for m in modes:
        prior = (1.0 - share) * (own[m.code] / total if total > 0 else 0.0) + share / len(modes)
        scores[m.code] = (math.log(prior) + evidence * m.shown(moved) if prior > 0
                          else -math.inf)
    return str(_most_likely(scores))


def _fault_classifiers(rows: pd.DataFrame, horizon: float, c: float) -> dict[str, dict[str, Any]]:
    """One classifier per device model with two fault types or more, and under ``POOLED`` one
    on the readings all models share for the fault types seen on several models (a power
    problem on any of them), against :data:`OTHER`."""
    near = rows[rows["failed"].astype(bool) & (rows["left_days"] <= horizon)
                & rows["fault_type"].notna()]
    out = {}
    models_of: dict[str, set[str]] = {}
    for model, of_model in near.groupby(near["model"].astype(str)):
        labels = of_model["fault_type"].astype(str).to_numpy()
        for label in set(labels.tolist()):
            models_of.setdefault(label, set()).add(str(model))
        fitted = fit_fault_classifier(of_model, labels, c=c)
        if fitted is not None:
            out[str(model)] = fitted
    shared_types = {t for t, m in models_of.items() if len(m) >= 2}
    present = rows.reindex(columns=reading_features(rows)).notna().groupby(
        rows["model"].astype(str)).any()
    common = [str(f) for f in present.columns[present.all(axis=0)]]
    if shared_types and common:
        labels = np.array([t if t in shared_types else OTHER
                           for t in near["fault_type"].astype(str)])
        fitted = fit_fault_classifier(near, labels, c=c, features=common, summaries=True)
        if fitted is not None:
            out[POOLED] = fitted
    return out


def healthy_sizes(healthy: pd.DataFrame, features: list[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the median and robust spread (interquartile range / 1.349, else the
    standard deviation, else 1) of its size (as :func:`design` takes it) over ``healthy`` rows
    that have the reading: what :meth:`FailurePredictor.moved` measures a row against."""
    raw = healthy.reindex(columns=features).to_numpy(dtype=float)
    center, spread = np.zeros(len(features)), np.ones(len(features))
    for j, feature in enumerate(features):
        values = raw[np.isfinite(raw[:, j]), j]
        if kind_of(feature) != "missing":
            values = np.log1p(np.abs(values))
        if not len(values):
            continue
        center[j] = float(np.median(values))
        q1, q3 = np.quantile(values, [0.25, 0.75])
        robust = float(q3 - q1) / 1.349
        spread[j] = robust if robust > 0 else (float(values.std()) or 1.0)
    return center, spread


def _fault_centroids(rows: pd.DataFrame, features: list[str], horizon: float
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[str]]]:
    near = rows[rows["failed"].astype(bool) & (rows["left_days"] <= horizon)
                & rows["fault_type"].notna()]
    if near.empty:
        return np.ones(len(features)), {}, {}
    x = np.nan_to_num(near.reindex(columns=features).to_numpy(dtype=float))
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = x / scale
    labels = near["fault_type"].astype(str).to_numpy()
    centroids = {f: z[labels == f].mean(axis=0) for f in sorted(set(labels.tolist()))}
    per_model: dict[str, list[str]] = {}
    for model, fault in sorted(set(zip(near["model"].astype(str), labels, strict=True))):
        per_model.setdefault(model, []).append(fault)
    return scale, centroids, per_model


def fit_predictor(rows: pd.DataFrame, settings: PredictorSettings | None = None, *,
                  catalogue: FaultCatalogue | None = None
                  ) -> tuple[FailurePredictor, dict[str, Any]]:
    """Fit on training rows and cross-validate on held-out devices; returns the model and figures.
    With ``catalogue``, the fault type is named with it (see the module's notes).

    Figures (all out of fold, whole devices held out): ``cv_brier`` of P(failure within the
    horizon) on rows whose outcome is known (the promotion score, lower is better), with the
    residuals for each fold's probabilities taken from the other folds; ``cv_auc``;
    ``cv_band_coverage`` of the band on rows with a known capped life; ``cv_rmse_near_days``
    on rows within ``cap_days`` of a failure; ``cv_fault_type_accuracy`` on rows within the
    horizon of a failure.
    """
    settings = settings or PredictorSettings()
    target = capped_target(rows, settings.cap_days)
    known = np.isfinite(target)
    train = rows[known].reset_index(drop=True)
    y = target[known]
    if train.empty:
        raise ValueError("no training row has a known remaining life")
    features = reading_features(train)
    models = sorted(set(train["model"].astype(str)))
    devices = train["device"].astype(str).to_numpy()
    folds = min(settings.folds, len(set(devices.tolist())))
    if folds < 2:
        raise ValueError("cross-validation needs at least two devices")
    fold = _device_folds(devices, folds)
    oof = np.zeros(len(train))
    for k in range(folds):
        held = fold == k
        fitted = _fit_once(train[~held], y[~held], features, models, settings)
        oof[held] = _predict(fitted, train[held], features, models, settings.cap_days)

    # Failures and devices per device model; own residuals where there are enough failures.
    history = failures_per_model(train)
    calibration = {POOLED: _calibration(oof, y, settings.bins)}
    model_of = train["model"].astype(str).to_numpy()
    for model in models:
        if history[model]["failures"] >= settings.min_failures:
            mask = model_of == model
            calibration[model] = _calibration(oof[mask], y[mask], settings.bins)

    mean, scale, weights, intercept = _fit_once(train, y, features, models, settings)
    x = design(train, features, models)
    healthy = y >= settings.cap_days
    if not healthy.any():
        healthy = np.ones(len(y), dtype=bool)
    reference = np.median(x[healthy], axis=0)
    # A reading's typical healthy value among the devices that have it, not the zeros of the
    # models that lack it.
    present = np.isfinite(train.reindex(columns=features).to_numpy(dtype=float))
    for j in range(len(features)):
        rows_with = healthy & present[:, j]
        if rows_with.any():
            reference[j] = np.median(x[rows_with, j])
    fault_features = features
    fault_scale, centroids, fault_models = _fault_centroids(train, fault_features,
                                                            settings.horizon_days)
    center, spread = healthy_sizes(train[healthy], features)
    logistic = settings.probability_model == "logistic"
    predictor = FailurePredictor(
        settings=settings, features=features, models=models, mean=mean, scale=scale,
        weights=weights, intercept=intercept, reference=reference, calibration=calibration,
        history=history, fault_features=fault_features, fault_scale=fault_scale,
        centroids=centroids, fault_models=fault_models,
        fault_classifiers=_fault_classifiers(train, settings.horizon_days, settings.fault_c),
        hazard=fit_hazard(rows, features, models, horizon=settings.horizon_days,
                          c=settings.hazard_c) if logistic else {},
        shared_hazard=_fit_shared_hazard(rows, features, models, settings, catalogue, center,
                                         spread) if logistic else {},
        catalogue=catalogue, healthy_center=center, healthy_spread=spread)
    figures = _cross_figures(rows, train, y, oof, fold, folds, settings, features, models,
                             catalogue)
    figures.update({"devices": int(len(set(devices.tolist()))), "rows": int(len(rows)),
                    "rows_with_known_life": int(len(train)), "folds": folds,
                    "failures": int(sum(h["failures"] for h in history.values())),
                    "per_model": history, "features": len(features)})
    return predictor, figures


def _fit_shared_hazard(rows: pd.DataFrame, features: list[str], models: list[str],
                       settings: PredictorSettings, catalogue: FaultCatalogue | None,
                       center: np.ndarray, spread: np.ndarray) -> dict[str, Any]:
    """The hazard for device models with few failures: on the catalogue's evidence and the
    strongest-of-a-kind columns, or on the latter alone without a catalogue."""
    if catalogue is None:
        return fit_hazard(rows, features, models, horizon=settings.horizon_days,
                          c=settings.hazard_c, inputs=SHARED_INPUTS)
    evidence = catalogue_evidence(catalogue, rows, moved_readings(rows, features, center,
                                                                  spread))
    return fit_hazard(rows, features, models, horizon=settings.horizon_days,
                      c=settings.hazard_c, inputs=EVIDENCE_INPUTS, evidence=evidence)


def few_failures(history: Mapping[str, Mapping[str, int]], rows: pd.DataFrame,
                 min_failures: int) -> np.ndarray:
    """Per row, whether its device model had fewer than ``min_failures`` failures in
    ``history`` (:func:`failures_per_model`; a model not in it had none)."""
    return np.array([history.get(str(m), {}).get("failures", 0) < min_failures
                     for m in rows["model"]], dtype=bool)


def failures_per_model(rows: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per device model in ``rows``: its lives that ended in a failure, and its devices."""
    history: dict[str, dict[str, int]] = {}
    for model, of_model in rows.groupby(rows["model"].astype(str)):
        failed = of_model[of_model["failed"].astype(bool)]
        history[str(model)] = {
            "failures": len(failed[["device", "life_end"]].drop_duplicates()),
            "devices": int(of_model["device"].nunique())}
    return history


def _cross_figures(rows: pd.DataFrame, train: pd.DataFrame, y: np.ndarray, oof: np.ndarray,
                   fold: np.ndarray, folds: int, settings: PredictorSettings,
                   features: list[str], models: list[str], catalogue: FaultCatalogue | None
                   ) -> dict[str, Any]:
    probability = np.zeros(len(train))
    lower, upper = np.zeros(len(train)), np.zeros(len(train))
    faults: list[str | None] = [None] * len(train)
    for k in range(folds):
        held = fold == k
        center, spread = healthy_sizes(train[~held & (y >= settings.cap_days)], features)
        edges, residuals = residual_bins(oof[~held], y[~held], settings.bins)
        probability[held] = failure_probability(oof[held], edges, residuals,
                                                settings.horizon_days)
        if settings.probability_model == "logistic":
            # Learned from every row of the other folds' devices, censored ones included.
            held_devices = set(train.loc[held, "device"].astype(str))
            others = rows[~rows["device"].astype(str).isin(held_devices)]
            hazard = fit_hazard(others, features, models, horizon=settings.horizon_days,
                                c=settings.hazard_c)
            shared = _fit_shared_hazard(others, features, models, settings, catalogue, center,
                                        spread)
            if hazard:
                few = few_failures(failures_per_model(others), train[held],
                                   settings.min_failures) if shared else None
                evidence = (catalogue_evidence(catalogue, train[held], moved_readings(
                    train[held], features, center, spread)) if catalogue is not None else None)
                probability[held] = hazard_probabilities(hazard, shared, train[held], features,
                                                         models, shared=few, evidence=evidence)
        lower[held], upper[held] = band(oof[held], edges, residuals, settings.coverage)
        scale, centroids, per_model = _fault_centroids(train[~held], features,
                                                       settings.horizon_days)
        classifiers = _fault_classifiers(train[~held], settings.horizon_days, settings.fault_c)
        fold_model = FailurePredictor(
            settings=settings, features=features, models=models, mean=np.zeros(0),
            scale=np.zeros(0), weights=np.zeros(0), intercept=0.0, reference=np.zeros(0),
            calibration={}, history={}, fault_features=features, fault_scale=scale,
            centroids=centroids, fault_models=per_model, fault_classifiers=classifiers,
            catalogue=catalogue, healthy_center=center, healthy_spread=spread)
        for index, fault in zip(np.flatnonzero(held), fold_model.fault_type(train[held]),
                                strict=True):
            faults[index] = fault
    outcome = horizon_outcome(train, settings.horizon_days)
    decided = np.isfinite(outcome)
    figures: dict[str, Any] = {
        "horizon_days": settings.horizon_days, "cap_days": settings.cap_days,
        "coverage_target": settings.coverage,
        "cv_brier": brier_score(outcome[decided], probability[decided]) if decided.any()
        else math.nan,
        "cv_band_coverage": interval_coverage(y, lower, upper),
        "positives": int(np.nansum(outcome)),
    }
    figures["cv_auc"] = auc(outcome[decided], probability[decided])
    near = train["failed"].astype(bool).to_numpy() & (y < settings.cap_days)
    figures["cv_rmse_near_days"] = (float(np.sqrt(np.mean((oof[near] - y[near]) ** 2)))
                                    if near.any() else None)
    labelled = (train["failed"].astype(bool).to_numpy()
                & (train["left_days"].to_numpy(dtype=float) <= settings.horizon_days)
                & train["fault_type"].notna().to_numpy())
    hits = [faults[i] == train["fault_type"].iloc[i] for i in np.flatnonzero(labelled)]
    figures["cv_fault_type_accuracy"] = float(np.mean(hits)) if hits else None
    return figures


def auc(outcome: np.ndarray, score: np.ndarray) -> float | None:
    """Probability that a row that failed within the horizon scores above one that did not."""
    pos, neg = score[outcome == 1], score[outcome == 0]
    if not len(pos) or not len(neg):
        return None
    ranks = pd.Series(np.concatenate([pos, neg])).rank().to_numpy()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
