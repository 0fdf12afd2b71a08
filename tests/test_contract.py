from pathlib import Path

import pytest
import yaml

from aios_pipelines.ingestion.contract import ContractError, load_contract
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH


def test_shipped_contract_declares_roles_the_pipeline_needs(contract):
    apps = contract.applications
    assert apps.id_column.name == "application_id"
    assert apps.timestamp_column.type == "timestamp"
    assert contract.outcomes.target_column.allowed_values == (0, 1)
    assert contract.performance_window_days > 0
    assert {c.meaning for c in apps.columns if c.meaning} == {
        "annual_income", "loan_amount", "term_months", "existing_debt"
    }


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONTRACT_PATH.read_text())
    mutate(raw)
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["applications"]["columns"][2].update(type="money"), "applications.annual_income: type"),
        (lambda r: r["applications"]["columns"][2].update(role="weird"), "annual_income: role"),
        (lambda r: r["applications"]["columns"][2].update(min="low"), "annual_income: min must be a number"),
        (lambda r: r["applications"]["columns"][2].update(colour="red"), "unknown field(s) ['colour']"),
        (lambda r: r["applications"]["columns"].append(dict(r["applications"]["columns"][2])), "declares column(s) twice"),
        (lambda r: r["applications"]["columns"].pop(0), "exactly one id column"),
        (lambda r: r.pop("outcomes"), "missing top-level field 'outcomes'"),
        (lambda r: r["outcomes"].update(performance_window_days=-3), "performance_window_days"),
    ],
)
def test_malformed_contract_names_file_and_field(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_contract_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(path)
