"""The model registry: trained models versioned with their validation figures and data period.

A model is stored as plain JSON parameters (``ModelVersion.params``), never
pickled: loading a pickle runs code from the file, loading these parameters
only builds one of an allow-list of classes (:func:`estimator_from_params`).
A retraining job registers each new model as a candidate and promotes it only
if it validates at least as well as the promoted one; when it can, it scores
both on the same held-out data (``evaluate``), since figures from different
validation periods do not compare.

Keyword-only functions on the caller's session; they never commit.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.scoring.models import ModelStatus, ModelVersion

# Classes a stored model may be rebuilt as; nothing else is ever imported from a stored name.
ALLOWED_CLASSES = frozenset({"analytics.multivariate.MultivariateDetector",
                             "analytics.multivariate.WindowDetector"})


class UnsafeModel(ValueError):
    """Parameters that are not plain data, or name a class outside the allow-list."""


@dataclass(frozen=True)
class Trained:
    """A newly trained model, ready to register."""

    name: str  # what it is for, e.g. "multivariate:infusion_pump"
    kind: str
    params: Mapping[str, Any]
    score: float
    data_start: datetime
    data_end: datetime
    higher_is_better: bool = True
    metrics: Mapping[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """JSON-able data, checked: no NaN or infinity, no objects."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UnsafeModel(f"not plain JSON data: {exc}") from None


def register(session: Session, *, trained: Trained, now: datetime) -> ModelVersion:
    """Store a candidate as the next version of its name."""
    if not math.isfinite(trained.score):
        raise UnsafeModel(f"validation score {trained.score!r} is not a finite number")
    if trained.data_start >= trained.data_end:
        raise ValueError("the data period is empty")
    last = session.scalar(select(func.max(ModelVersion.version)).where(
        ModelVersion.name == trained.name))
    row = ModelVersion(name=trained.name, version=(last or 0) + 1, kind=trained.kind,
                       params=_plain(dict(trained.params)), metrics=_plain(dict(trained.metrics)),
                       score=trained.score, higher_is_better=trained.higher_is_better,
                       data_start=trained.data_start, data_end=trained.data_end,
                       status=ModelStatus.CANDIDATE.value, created_at=now)
    session.add(row)
    session.flush()
    return row


def promoted(session: Session, *, name: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(
        ModelVersion.name == name, ModelVersion.status == ModelStatus.PROMOTED.value))


def at_least_as_good(candidate: float, current: float, *, higher_is_better: bool) -> bool:
    return candidate >= current if higher_is_better else candidate <= current


def promote_if_better(
    session: Session, *, candidate: ModelVersion, now: datetime,
    evaluate: Callable[[ModelVersion], float] | None = None,
) -> bool:
    """Promote the candidate if it validates at least as well as the promoted version.

    With ``evaluate`` (promoted version -> its score on data it did not learn
    from, comparable with the candidate's) the promoted version is scored
    again; otherwise the stored scores are compared. The loser is marked
    rejected (or retired, if it was promoted).
    """
    current = session.scalar(select(ModelVersion).where(
        ModelVersion.name == candidate.name, ModelVersion.status == ModelStatus.PROMOTED.value)
        .with_for_update())
    if current is not None:
        current_score = evaluate(current) if evaluate is not None else current.score
        if not at_least_as_good(candidate.score, current_score,
                                higher_is_better=candidate.higher_is_better):
            candidate.status = ModelStatus.REJECTED.value
            candidate.metrics = {**candidate.metrics, "promoted_score_then": current_score}
            return False
        current.status = ModelStatus.RETIRED.value
        session.flush()  # one promoted row per name: the old one steps down first
    candidate.status = ModelStatus.PROMOTED.value
    candidate.promoted_at = now
    session.flush()
    return True


# -- estimators as plain parameters ------------------------------------------------------


def estimator_to_params(estimator: Any) -> dict[str, Any]:
    """An estimator's constructor arguments and learned arrays as JSON data.

    Only learned attributes that are numbers, strings or arrays of them are
    kept; an estimator holding a nested model (an isolation forest's trees) is
    refused rather than stored half.
    """
    cls = type(estimator)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name not in ALLOWED_CLASSES:
        raise UnsafeModel(f"{name} is not a class the registry stores")
    learned: dict[str, Any] = {}
    for attr, value in vars(estimator).items():
        if not attr.endswith("_") or attr.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            if not all(isinstance(v, str) for v in value.ravel()):
                raise UnsafeModel(f"{attr}: an object array that is not all text")
            learned[attr] = {"strings": value.tolist()}  # scikit-learn's feature_names_in_
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise UnsafeModel(f"{attr}: array of {value.dtype} is not plain numbers")
            learned[attr] = {"array": value.tolist(), "dtype": value.dtype.str}
        elif isinstance(value, bool | int | float | str) or value is None:
            learned[attr] = {"value": value}
        elif isinstance(value, list | tuple) and all(
                isinstance(v, str | int | float) for v in value):
            learned[attr] = {"list": list(value)}
        else:
            raise UnsafeModel(f"{attr}: a {type(value).__name__} is not plain data")
    return _plain({"class": name, "params": estimator.get_params(), "learned": learned})


def load(row: ModelVersion) -> Any:
    """The model of a registry row, rebuilt by its kind's loader from plain parameters."""
    if row.kind == "failure_prediction":
        from analytics.prediction.failure import FailurePredictor

        return FailurePredictor.from_params(row.params)
    return estimator_from_params(row.params)


def estimator_from_params(document: Mapping[str, Any]) -> Any:
    """Rebuild an estimator from :func:`estimator_to_params` output; only allow-listed classes."""
    name = document.get("class")
    if name not in ALLOWED_CLASSES:
        raise UnsafeModel(f"{name!r} is not a class the registry loads")
    module, _, qualname = str(name).rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    estimator = cls(**document["params"])
    for attr, stored in document["learned"].items():
        if not attr.endswith("_"):
            raise UnsafeModel(f"{attr} is not a learned attribute")
        if "array" in stored:
            value: Any = np.asarray(stored["array"], dtype=np.dtype(stored["dtype"]))
        elif "strings" in stored:
            value = np.asarray([str(v) for v in stored["strings"]], dtype=object)
        elif "list" in stored:
            value = list(stored["list"])
        else:
            value = stored["value"]
        setattr(estimator, attr, value)
    return estimator
