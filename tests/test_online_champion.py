"""The champion holder on its own: loads once, checks the alias at most every N seconds, swaps
one immutable snapshot, keeps serving when the registry cannot be read."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from aios_pipelines.decisioning.online import ChampionHolder

FEATURES = ["x0", "x1"]


def booster(seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 4, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=5)


class FakeRegistry:
    """Versions in memory; counts the calls the holder makes."""

    def __init__(self):
        self.versions = {1: booster(1), 2: booster(2)}
        self.alias: int | None = 1
        self.alias_reads = 0
        self.loads: list[int] = []
        self.broken: set[int] = set()
        self.unreachable = False

    def alias_version(self, alias: str) -> int | None:
        assert alias == "champion"
        self.alias_reads += 1
        if self.unreachable:
            raise ConnectionError("tracking server down")
        return self.alias

    def load_booster(self, version: int):
        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"model files of version {version} are missing")
        card = {"feature_spec": {"features": FEATURES, "categorical": [], "monotone": {}},
                "feature_ranges": {"x0": [-3, 3]}}
        return self.versions[version], card


class Ticker:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def setup():
    registry, ticker = FakeRegistry(), Ticker()
    return registry, ticker, ChampionHolder(registry, check_interval_seconds=5, monotonic=ticker)


def test_loads_once_and_checks_the_alias_at_most_every_interval(setup):
    registry, ticker, holder = setup
    first = holder.current()
    assert first.model_version == "1" and first.generation == 1 and registry.loads == [1]
    for _ in range(50):
        assert holder.current() is first
    assert registry.alias_reads == 1  # no check inside the interval
    registry.alias = 2
    ticker.now = 4.9
    assert holder.current() is first  # the move is seen only when the check is due
    ticker.now = 5.0
    second = holder.current()
    assert second.model_version == "2" and second.generation == 2 and holder.swaps == 1
    assert first.model_version == "1"  # the old snapshot is untouched: a request holding it is consistent
    assert registry.loads == [1, 2]
    ticker.now = 10.0
    assert holder.current() is second and registry.loads == [1, 2]  # same alias: nothing reloaded


def test_unusable_champion_means_fallback_and_recovers(setup):
    registry, ticker, holder = setup
    holder.current()
    registry.broken.add(2)
    registry.alias = 2
    broken = holder.refresh()
    assert broken.model is None and broken.decision_source == "fallback_rules"
    assert "champion v2 cannot be loaded" in broken.fallback_reason
    registry.broken.clear()
    ticker.now = 5.0
    assert holder.current().model_version == "2"  # retried at the next check
    registry.alias = None
    assert holder.refresh().fallback_reason == "no model holds the champion alias"


def test_an_unreachable_registry_keeps_the_loaded_champion(setup):
    registry, ticker, holder = setup
    loaded = holder.current()
    registry.unreachable = True
    ticker.now = 60.0
    assert holder.current() is loaded and "tracking server down" in holder.last_check_error
    fresh = ChampionHolder(registry, check_interval_seconds=5, monotonic=ticker)
    assert fresh.current().fallback_reason.startswith("the model registry cannot be read")


def test_a_registry_factory_is_called_on_the_first_check_only():
    made: list[FakeRegistry] = []

    def factory() -> FakeRegistry:
        made.append(FakeRegistry())
        return made[-1]

    holder = ChampionHolder(registry_factory=factory, check_interval_seconds=0)
    assert made == [] and holder.snapshot is None
    holder.current()
    holder.current()
    assert len(made) == 1 and holder.current().model_version == "1"
    with pytest.raises(ValueError):
        ChampionHolder(check_interval_seconds=1)
