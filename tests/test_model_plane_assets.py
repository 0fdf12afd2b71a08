"""The model plane end to end on real assets: training set, training and registration, the
promotion gate, scoring with reasons, rollback, the fallback scorecard and the automation switch.

One data directory per module (an MLflow SQLite store takes seconds to create): 70 days of a
synthetic lender are ingested in single-run backfills, the model is trained once and every
application is scored. Later stages (a second training, a refused weak model) are module
fixtures that build on each other, so every test names the state it needs. Tests that move
the champion alias, pause automation or damage the champion put the shared state back.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import dagster as dg
import numpy as np
import polars as pl
import pytest

from aios_pipelines import cli
from aios_pipelines.defs.decisioning.assets import scored_applications
from aios_pipelines.defs.features.assets import application_features
from aios_pipelines.defs.ingestion.assets import raw_applications, raw_loan_outcomes
from aios_pipelines.defs.modeling.assets import ModelTrainingConfig, credit_risk_model, training_set
from aios_pipelines.defs.resources import (
    LandingResource,
    ModelRegistryResource,
    PolicyResource,
    ReportsResource,
    WarehouseResource,
)
from aios_pipelines.modeling.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, ModelRegistry, default_registry_config
from aios_pipelines.modeling.training import FeatureSpec, feature_matrix
from aios_pipelines.modeling.training_set import build_training_set
from aios_pipelines.policy import automation_switch
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH, iter_compares, load_policy
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing

START = date(2026, 3, 2)
DAYS = 70
PER_DAY = 200
WINDOW = 60  # the shipped contract's performance window
LAST_DAY = START + timedelta(days=DAYS - 1)
FIRST_OUTCOME_DAY = START + timedelta(days=WINDOW)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# Small data: a short out-of-time window, small leaves, a minimum AUC the small sample can reach.
TRAINING = dict(oot_days=5, min_data_in_leaf=20, min_oot_auc=0.6)
WEAK_TRAINING = dict(TRAINING, num_leaves=2, max_rounds=2, learning_rate=0.01)


# ---------------------------------------------------------------------- helpers


def resources(paths: AiosPaths) -> dict:
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        "reports": ReportsResource(reports_dir=str(paths.reports)),
        "model_registry": ModelRegistryResource(
            tracking_uri=paths.mlflow_tracking_uri, artifact_location=paths.mlflow_artifact_uri
        ),
        "policy": PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(paths.control)),
    }


def materialize_range(world, assets, first: date, last: date) -> dg.ExecuteInProcessResult:
    """One run over a whole day range (a single-run backfill)."""
    return dg.materialize(
        assets,
        resources=resources(world.paths),
        instance=world.instance,
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
    )


def train(world, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [training_set, credit_risk_model],
        resources=resources(world.paths),
        instance=world.instance,
        run_config=dg.RunConfig(ops={"credit_risk_model": ModelTrainingConfig(**config)}),
    )


def score_day(world, day: date, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [scored_applications], partition_key=day.isoformat(), resources=resources(world.paths),
        instance=world.instance, **kw,
    )


def metadata(result: dg.ExecuteInProcessResult, node: str, asset: str | None = None) -> dict:
    mats = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node(node)}
    return {k: v.value for k, v in mats[asset or node].items()}


def checks(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def table(paths: AiosPaths, name: str, where: str = "", params=None) -> pl.DataFrame:
    return Warehouse(paths.warehouse).query(f"select * from {name} {where}", params)


def scored_on(paths: AiosPaths, day: date) -> pl.DataFrame:
    return table(paths, "scored_applications", "where application_date = ?", [day]).sort("application_id")


def new_version(result: dg.ExecuteInProcessResult) -> int:
    return int(metadata(result, "credit_risk_model")["model_version"])


def contributions_of(world, version: int, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """LightGBM's own per-feature contributions (no bias column) of ``ids``, in that order."""
    booster, card = world.registry.load_booster(version)
    spec = FeatureSpec.from_dict(card["feature_spec"])
    rows = (
        table(world.paths, "application_features", "where application_id in (select unnest(?::varchar[]))", [ids])
        .join(pl.DataFrame({"application_id": ids}).with_row_index("order"), on="application_id")
        .sort("order")
    )
    assert rows["application_id"].to_list() == ids
    contribs = booster.predict(feature_matrix(rows, spec), pred_contrib=True)
    return contribs[:, : len(spec.features)], list(spec.features)


# ---------------------------------------------------------------------- the shared world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """70 days ingested (10 of them with matured outcomes), outcomes loaded, v1 trained and every application scored."""
    paths = AiosPaths(tmp_path_factory.mktemp("model_plane") / "home").ensure()
    write_landing(paths.landing, start=START, days=DAYS, per_day=PER_DAY, seed=11, file_format="mixed",
                  performance_window_days=WINDOW)
    with dg.instance_for_test() as instance:
        w = SimpleNamespace(paths=paths, instance=instance, registry=ModelRegistry(default_registry_config(paths)))
        assert materialize_range(w, [raw_applications, application_features], START, LAST_DAY).success
        assert materialize_range(w, [raw_loan_outcomes], FIRST_OUTCOME_DAY, LAST_DAY).success
        w.first_training = train(w, **TRAINING)
        assert w.first_training.success
        w.v1 = new_version(w.first_training)
        w.first_scoring = materialize_range(w, [scored_applications], START, LAST_DAY)
        assert w.first_scoring.success
        w.scored = table(paths, "scored_applications")
        w.champion_when_scored = w.registry.champion().version
        yield w


@pytest.fixture(scope="module")
def retrained(world):
    """The same training run again, on the same training set: v2."""
    result = train(world, **TRAINING)
    assert result.success
    return SimpleNamespace(result=result, version=new_version(result))


@pytest.fixture(scope="module")
def weak(world, retrained):
    """A deliberately weak candidate after two good versions: the gate should refuse it."""
    champion_before = world.registry.champion().version
    result = train(world, **WEAK_TRAINING)
    assert result.success
    return SimpleNamespace(result=result, version=new_version(result), champion_before=champion_before)


# ---------------------------------------------------------------------- 1. training set


def test_training_set_uses_only_matured_outcomes_known_at_as_of(world):
    outcomes = table(world.paths, "raw_loan_outcomes")
    last_outcome_day = outcomes["outcome_date"].max()
    as_of = last_outcome_day - timedelta(days=5)
    assert outcomes.filter(pl.col("outcome_date") > as_of).height > 0, "some outcomes must be after the cut-off"
    try:
        result = dg.materialize(
            [training_set], resources=resources(world.paths), instance=world.instance,
            run_config={"ops": {"training_set": {"config": {"as_of": as_of.isoformat()}}}},
        )
        assert result.success
        assert metadata(result, "training_set")["as_of"] == as_of.isoformat()
        frame = table(world.paths, "training_set")
        assert frame.height > 0
        assert frame.filter(pl.col("outcome_date") > as_of).is_empty()
        assert frame.filter(pl.col("application_date") + timedelta(days=WINDOW) > as_of).is_empty()
        assert frame.filter(pl.col("outcome_date") < pl.col("application_date") + timedelta(days=WINDOW)).is_empty()
        assert frame["application_id"].n_unique() == frame.height
        # every outcome observed by as_of (of an application that has features) is in the set
        known = outcomes.filter(pl.col("outcome_date") <= as_of)
        assert set(frame["application_id"]) == set(known["application_id"]) & set(
            table(world.paths, "application_features")["application_id"]
        )
    finally:  # put back the default training set (as_of: the newest outcome day)
        assert dg.materialize([training_set], resources=resources(world.paths), instance=world.instance).success


def test_build_training_set_drops_late_outcomes_and_open_windows(contract):
    as_of = date(2026, 6, 30)
    features = pl.DataFrame(
        {
            "application_id": ["A", "B", "C", "D", "E"],
            "application_date": [date(2026, 4, 1), date(2026, 4, 1), date(2026, 5, 15), date(2026, 5, 1),
                                 date(2026, 4, 1)],
            "bureau_score": [700.0, 610.0, 520.0, 680.0, 650.0],
        }
    )
    outcomes = pl.DataFrame(
        {
            "application_id": ["A", "B", "C", "D"],
            "outcome_date": [
                date(2026, 5, 31),  # A: window closed (day + 60), observed before as_of
                date(2026, 7, 5),   # B: observed after as_of: not known yet at as_of
                date(2026, 6, 20),  # C: reported before as_of, but its 60-day window is still open
                date(2026, 6, 30),  # D: window closes exactly on as_of (closed boundary)
            ],
            "defaulted": [1, 1, 1, 0],
        }
    )
    frame = build_training_set(features, outcomes, contract.outcomes, as_of=as_of, performance_window_days=WINDOW)
    assert frame["application_id"].to_list() == ["A", "D"]
    assert frame["defaulted"].to_list() == [1, 0]
    assert frame["outcome_date"].to_list() == [date(2026, 5, 31), date(2026, 6, 30)]
    assert frame["bureau_score"].to_list() == [700.0, 680.0]


# ---------------------------------------------------------------------- 2. first training


def test_first_training_registers_v1_as_champion_with_lineage(world):
    result = world.first_training
    meta = metadata(result, "credit_risk_model")
    assert meta["model_version"] == world.v1 == 1
    assert meta["gate_decision"] == "promoted"
    assert meta["aliases"] == CHAMPION_ALIAS
    assert 0.6 <= meta["oot_auc"] <= 1.0
    evaluations = checks(result)
    assert evaluations["check_performance_oot_auc"].passed
    assert evaluations["check_promotion_gate"].passed

    info = world.registry.get_version(world.v1)
    assert info.tags["dagster_run_id"] == result.run_id
    assert info.tags["data_snapshot_hash"] == meta["data_snapshot_hash"]
    assert len(info.tags["data_snapshot_hash"]) == 64
    assert info.tags["contract_fingerprint"] == LandingResource(
        landing_dir=str(world.paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)
    ).contract().fingerprint
    assert info.tags["gate_decision"] == "promoted"
    assert info.metrics["auc"] == pytest.approx(meta["oot_auc"])
    assert {"auc", "brier", "gini", "ks"} <= set(info.metrics)
    # the first champion, set by the gate (the history survives later alias moves)
    first = world.registry.alias_history()[0]
    assert (first["alias"], first["action"], first["from_version"], first["to_version"], first["actor"]) == (
        CHAMPION_ALIAS, "promote", None, world.v1, "promotion_gate"
    )


# ---------------------------------------------------------------------- 3. determinism


def test_training_twice_on_the_same_data_gives_the_same_model(world, retrained):
    assert retrained.version == world.v1 + 1
    first, second = world.registry.get_version(world.v1), world.registry.get_version(retrained.version)
    assert second.tags["data_snapshot_hash"] == first.tags["data_snapshot_hash"]
    assert second.tags["dagster_run_id"] == retrained.result.run_id != first.tags["dagster_run_id"]
    booster_1, _ = world.registry.load_booster(world.v1)
    booster_2, _ = world.registry.load_booster(retrained.version)
    assert booster_2.model_to_string() == booster_1.model_to_string()
    assert second.metrics["auc"] == first.metrics["auc"]
    # as good as the champion on the same out-of-time window: the gate lets it through
    assert metadata(retrained.result, "credit_risk_model")["gate_decision"] == "promoted"


# ---------------------------------------------------------------------- 4. the gate


def test_gate_keeps_a_weaker_model_as_challenger(world, weak):
    meta = metadata(weak.result, "credit_risk_model")
    assert meta["gate_decision"] == "kept as challenger"
    assert meta["gate_reason"].startswith("refused: ")
    info = world.registry.get_version(weak.version)
    assert CHALLENGER_ALIAS in info.aliases and CHAMPION_ALIAS not in info.aliases
    assert info.tags["gate_decision"] == "refused"
    assert info.tags["gate_reason"] == meta["gate_reason"]
    assert world.registry.champion().version == weak.champion_before != weak.version
    gate = checks(weak.result)["check_promotion_gate"]
    assert not gate.passed
    assert gate.severity == dg.AssetCheckSeverity.WARN
    # the champion was re-scored on the candidate's window, not judged on stale metrics
    assert meta["champion_comparison"].startswith(f"champion v{weak.champion_before} re-scored")


# ---------------------------------------------------------------------- 5. scoring


def test_scoring_routes_every_application_with_the_champion_and_its_reasons(world):
    scored = world.scored
    features = table(world.paths, "application_features")
    assert scored.height == features.height == table(world.paths, "raw_applications").height
    assert scored["application_id"].n_unique() == scored.height
    assert set(scored["application_id"]) == set(features["application_id"])
    assert set(scored["decision_source"]) == {"model"}
    assert set(scored["model_version"]) == {str(world.champion_when_scored)} == {str(world.v1)}
    assert set(scored["policy_version"]) == {load_policy(DEFAULT_POLICY_PATH).version}
    assert set(scored["action"]) == {"auto_approve", "auto_decline", "review"}, "all three routes are exercised"
    assert scored["pd"].is_between(0, 1).all()

    n_reasons = scored["reason_codes"].list.len()
    declines = scored.filter(pl.col("action") == "auto_decline")
    assert declines["reason_codes"].list.len().is_between(1, 4).all()
    assert (n_reasons <= 4).all()
    assert (n_reasons == scored["reason_features"].list.len()).all()
    # reasons are produced where the policy needs them, not for approvals
    assert scored.filter(pl.col("action") == "auto_approve")["reason_features"].list.len().max() == 0

    meta = metadata(world.first_scoring, "scored_applications")
    assert meta["model_version"] == str(world.v1)
    assert meta["auto_decline"] == declines.height
    evaluations = checks(world.first_scoring)
    assert evaluations["check_availability_champion_model"].passed
    assert evaluations["check_validity_reason_codes"].passed
    assert evaluations["check_consistency_one_score_per_application"].passed


def test_reasons_are_the_largest_positive_contributions_in_order(world):
    explained = world.scored.filter(pl.col("action").is_in(["auto_decline", "review"]))
    sample = pl.concat(
        [explained.filter(pl.col("action") == action).sort("application_id").head(25)
         for action in ("auto_decline", "review")]
    )
    ids = sample["application_id"].to_list()
    contribs, features = contributions_of(world, world.v1, ids)
    compared = 0
    for application_id, reasons, row in zip(ids, sample["reason_features"].to_list(), contribs):
        positive = [(value, name) for name, value in zip(features, row) if value > 0]
        expected = [name for value, name in sorted(positive, key=lambda p: -p[0])][:4]
        assert reasons == expected, application_id
        compared += len(expected)
    assert compared > len(ids), "the sample must carry real reasons"


# ---------------------------------------------------------------------- 6. rollback


def test_promote_then_rollback_changes_which_model_scores(world, weak, monkeypatch, capsys):
    # A day with a hard-rule decline in which the weak model sees nothing risk-raising: it
    # must still be declined with reasons (the rule's conditions), and the run must succeed.
    hard = world.scored.filter((pl.col("action") == "auto_decline") & pl.col("policy_hard_rule").is_not_null())
    contribs, _ = contributions_of(world, weak.version, hard["application_id"].to_list())
    unexplained = hard.filter(pl.Series((contribs > 0).sum(axis=1) == 0))
    assert unexplained.height > 0, "the weak model must leave some hard-rule declines without a model reason"
    day = unexplained["application_date"].min()

    previous = world.registry.champion().version
    world.registry.promote(weak.version, actor="carol", reason="challenger trial")
    result = score_day(world, day)
    assert result.success
    assert checks(result)["check_validity_reason_codes"].passed
    scored = scored_on(world.paths, day)
    assert set(scored["model_version"]) == {str(weak.version)}
    declines = scored.filter(pl.col("action") == "auto_decline")
    assert declines["reason_codes"].list.len().is_between(1, 4).all()
    rule_columns = {
        rule.id: {c for cmp in iter_compares(rule.when) for c in cmp.columns}
        for rule in load_policy(DEFAULT_POLICY_PATH).hard_rules
    }
    rescued = declines.filter(pl.col("application_id").is_in(unexplained["application_id"].to_list()))
    assert rescued.height > 0
    for row in rescued.iter_rows(named=True):
        named = {f.removesuffix("__missing") for f in row["reason_features"]}
        assert row["reason_features"] and named <= rule_columns[row["policy_hard_rule"]], row
        assert "OTHER" not in row["reason_codes"], row

    monkeypatch.setenv("AIOS_HOME", str(world.paths.home))
    monkeypatch.delenv("AIOS_MLFLOW_TRACKING_URI", raising=False)
    capsys.readouterr()
    assert cli.main(["model", "rollback", "--reason", "challenger declines too much", "--actor", "dave"]) == 0
    out = capsys.readouterr().out
    assert f"v{previous} is the champion again" in out
    assert world.registry.champion().version == previous
    last = world.registry.alias_history()[-1]
    assert (last["action"], last["from_version"], last["to_version"], last["actor"], last["reason"]) == (
        "rollback", weak.version, previous, "dave", "challenger declines too much"
    )

    result = score_day(world, day)
    assert result.success
    assert set(scored_on(world.paths, day)["model_version"]) == {str(previous)}
    assert metadata(result, "scored_applications")["model_version"] == str(previous)


# ---------------------------------------------------------------------- 8. automation switch


def test_paused_automation_routes_everything_to_review(world):
    day = START + timedelta(days=20)
    before = world.scored.filter(pl.col("application_date") == day)
    assert before.filter(pl.col("action") != "review").height > 0, "the day needs automatic decisions to pause"
    automation_switch.pause(world.paths.control, "alice", "incident 42")
    try:
        result = score_day(world, day)
        assert result.success
        paused = scored_on(world.paths, day)
        assert paused.height == before.height
        assert set(paused["action"]) == {"review"}
        assert paused["automation_paused"].all()
        meta = metadata(result, "scored_applications")
        assert meta["automation_paused"] is True
        assert meta["auto_approve"] == meta["auto_decline"] == 0
        assert "alice" in meta["automation_switch"] and "incident 42" in meta["automation_switch"]
    finally:
        automation_switch.resume(world.paths.control, "alice", "incident 42 resolved")
    result = score_day(world, day)
    assert result.success
    resumed = scored_on(world.paths, day)
    assert not resumed["automation_paused"].any()
    assert set(resumed["action"]) >= {"auto_approve"} and resumed.filter(pl.col("action") != "review").height > 0
    assert metadata(result, "scored_applications")["automation_paused"] is False


# ---------------------------------------------------------------------- 9. idempotence


def test_rescoring_a_day_changes_nothing(world):
    day = START + timedelta(days=10)
    assert score_day(world, day).success  # scored by today's champion
    before = table(world.paths, "scored_applications").sort("application_id")
    assert score_day(world, day).success
    after = table(world.paths, "scored_applications").sort("application_id")
    assert after.height == before.height
    assert after.equals(before)


# ---------------------------------------------------------------------- 7. fallback (damages the store: last)


def test_missing_champion_files_fall_back_to_the_scorecard(world):
    day = START + timedelta(days=30)
    champion = world.registry.champion()
    assert champion.model_id
    model_files = [p.parent for p in world.paths.mlflow_artifacts.rglob("MLmodel") if champion.model_id in p.as_posix()]
    assert len(model_files) == 1, model_files
    moved = model_files[0].with_name(model_files[0].name + ".moved_away")
    model_files[0].rename(moved)  # as if someone deleted the folder
    try:
        result = score_day(world, day)
        assert result.success, "a broken champion must not block scoring"
        scored = scored_on(world.paths, day)
        assert scored.height == world.scored.filter(pl.col("application_date") == day).height
        assert set(scored["decision_source"]) == {"fallback_rules"}
        assert scored["model_version"].is_null().all()
        assert (scored["fallback_reason"].str.len_chars() > 0).all()
        assert f"version {champion.version}" in scored["fallback_reason"][0]
        assert "auto_approve" not in set(scored["action"])
        declines = scored.filter(pl.col("action") == "auto_decline")
        assert declines["policy_rule"].str.starts_with("hard_rule:").all(), "the fallback declines only on hard rules"
        meta = metadata(result, "scored_applications")
        assert meta["decision_source"] == "fallback_rules"
        assert meta["fallback_rows"] == scored.height
        availability = checks(result)["check_availability_champion_model"]
        assert not availability.passed
        assert availability.severity == dg.AssetCheckSeverity.WARN
    finally:
        moved.rename(model_files[0])
    assert score_day(world, day).success
    assert set(scored_on(world.paths, day)["decision_source"]) == {"model"}
