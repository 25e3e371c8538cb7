"""The model registry: versions, promotion only when at least as good, loading without pickle."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from analytics.jobs import registry
from analytics.multivariate import MultivariateDetector, WindowDetector
from tests.jobs.conftest import T0
from vigil.db.session import transaction
from vigil.scoring.models import ModelVersion


def trained(score: float, params=None, name: str = "multivariate:infusion_pump"
            ) -> registry.Trained:
    return registry.Trained(name=name, kind="test", params=params or {"w": [1.0, 2.0]}, score=score,
                            data_start=T0 - timedelta(days=30), data_end=T0,
                            metrics={"cv_auc": score, "folds": 5})


def add(factory, score: float, evaluate=None) -> tuple[int, bool]:
    with transaction(factory) as session:
        row = registry.register(session, trained=trained(score), now=T0)
        return row.version, registry.promote_if_better(session, candidate=row, now=T0,
                                                       evaluate=evaluate)


def statuses(factory) -> list[tuple[int, str]]:
    with factory() as session:
        return [(r.version, r.status) for r in session.scalars(
            select(ModelVersion).order_by(ModelVersion.version))]


def test_a_version_is_promoted_only_if_it_validates_at_least_as_well(factory) -> None:
    assert add(factory, 0.80) == (1, True)  # the first one has nothing to beat
    assert add(factory, 0.75) == (2, False)
    assert add(factory, 0.80) == (3, True)  # as good is good enough: newer data
    assert statuses(factory) == [(1, "retired"), (2, "rejected"), (3, "promoted")]
    with factory() as session:
        current = registry.promoted(session, name="multivariate:infusion_pump")
        assert current.version == 3 and current.metrics == {"cv_auc": 0.8, "folds": 5}
        assert current.data_start == T0 - timedelta(days=30)


def test_the_promoted_model_is_scored_again_on_the_candidates_data(factory) -> None:
    add(factory, 0.70)
    # On the candidate's held-out data the promoted model does better than its stored 0.70.
    assert add(factory, 0.75, evaluate=lambda current: 0.9)[1] is False
    assert statuses(factory) == [(1, "promoted"), (2, "rejected")]


def test_one_promoted_version_per_name_is_enforced_by_the_database(factory) -> None:
    add(factory, 0.8)
    with pytest.raises(IntegrityError), transaction(factory) as session:
        row = registry.register(session, trained=trained(0.9), now=T0)
        row.status = "promoted"
        session.flush()


def test_unsafe_or_non_finite_models_are_refused(factory) -> None:
    with pytest.raises(registry.UnsafeModel), transaction(factory) as session:
        registry.register(session, trained=trained(0.8, params={"f": object()}), now=T0)
    with pytest.raises(registry.UnsafeModel), transaction(factory) as session:
        registry.register(session, trained=trained(float("nan")), now=T0)
    with pytest.raises(registry.UnsafeModel):
        registry.estimator_from_params({"class": "os.system", "params": {}, "learned": {}})


def test_a_multivariate_detector_round_trips_as_plain_json(factory) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    healthy = pd.DataFrame({"current": a, "flow": 2 * a + rng.normal(scale=0.1, size=2000)})
    model = MultivariateDetector().fit(healthy)
    document = registry.estimator_to_params(model)
    with transaction(factory) as session:
        row = registry.register(session, trained=trained(0.9, params=document), now=T0)
        registry.promote_if_better(session, candidate=row, now=T0)
    with factory() as session:
        loaded = registry.estimator_from_params(
            registry.promoted(session, name="multivariate:infusion_pump").params)
    # The second vector breaks the relation between the metrics.
    odd = pd.DataFrame({"current": [0.0, 1.0], "flow": [0.0, -2.0]})
    assert np.array_equal(loaded.score_samples(odd), model.score_samples(odd))
    # Whichever sign convention the detector uses, the odd vector stands apart.
    assert abs(loaded.score_samples(odd)[1] - loaded.score_samples(odd)[0]) > 0.5
    forest = MultivariateDetector(method="isolation_forest", n_estimators=10).fit(healthy)
    with pytest.raises(registry.UnsafeModel):
        registry.estimator_to_params(forest)


def test_a_window_detector_round_trips_as_plain_json(factory) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=3000)
    index = pd.date_range("2026-01-01", periods=3000, freq="5min", tz="UTC")
    healthy = pd.DataFrame({"current": a, "flow": 2 * a + rng.normal(scale=0.1, size=3000)},
                           index=index)
    model = WindowDetector(window=6).fit(healthy)
    with transaction(factory) as session:
        row = registry.register(session, trained=trained(0.01, params=registry.estimator_to_params(
            model)), now=T0)
        registry.promote_if_better(session, candidate=row, now=T0)
    with factory() as session:
        loaded = registry.load(registry.promoted(session, name="multivariate:infusion_pump"))
    assert isinstance(loaded, WindowDetector) and loaded.window == 6
    odd = healthy.iloc[:100].assign(flow=0.0)
    assert np.array_equal(loaded.anomaly_score(odd), model.anomaly_score(odd))
    assert (loaded.predict(odd)[10:] == -1).all()
