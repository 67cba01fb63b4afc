"""The run's data preparation from the shared benchmark files (FDD_DATA_DIR)."""

import pytest

from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError, load_config
from fdd_core.records import Problem
from fdd_core.run_data import prepare_data
from fdd_core.store import read_jsonl


def test_benchmarks_are_written_as_problem_files(tmp_path, data_dir):
    cfg = load_config(None, [f"data.data_dir={data_dir}", "data.benchmarks=[synthetic-test, gsm8k, svamp]",
                             "data.eval_limit=25", "data.n_seed=10"])
    result = prepare_data(cfg, tmp_path)
    assert result.counts.rows == {"seed": 10, "synthetic-test": 25, "gsm8k": 25, "svamp": 25}
    assert Problem.model_validate(read_jsonl(result.outputs["gsm8k"])[0]).source == "gsm8k"


def test_synthetic_test_needs_synthetic_seeds(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="data.seed_set=gsm8k-train cannot go with synthetic-test"):
        load_config(None, [f"data.data_dir={data_dir}", "data.seed_set=gsm8k-train", "data.n_seed=5"])
    # a config built in code (a deployment's parameters) is caught by the stage itself
    cfg = FDDConfig.model_validate({"data": {"data_dir": str(data_dir), "seed_set": "gsm8k-train", "n_seed": 5}})
    with pytest.raises(ValueError, match="synthetic-test needs data.seed_set: synthetic"):
        prepare_data(cfg, tmp_path)
