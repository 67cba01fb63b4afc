"""The run's data preparation and the growth of the distillation set between rounds."""

import pytest

from fdd_core.config_files import ConfigError, load_config
from fdd_core.records import Example
from fdd_core.run_data import check_run_values, grow_training_set, prepare_data
from fdd_core.store import read_jsonl, verify_manifest, write_jsonl


def test_synthetic_run_data_is_fixed_by_the_seed(tmp_path):
    cfg = load_config(None, ["data.n_seed=50", "data.n_synthetic_test=40"])
    first = prepare_data(cfg, tmp_path / "a")
    second = prepare_data(cfg, tmp_path / "b")
    assert first.counts.rows == {"seed": 50, "synthetic-test": 40}
    assert (tmp_path / "a" / "seed.jsonl").read_text() == (tmp_path / "b" / "seed.jsonl").read_text()
    assert verify_manifest(tmp_path / "a") is not None
    seeds = {r["question"] for r in read_jsonl(first.outputs["seed"])}
    assert not seeds & {r["question"] for r in read_jsonl(first.outputs["synthetic-test"])}
    other = prepare_data(load_config(None, ["data.n_seed=50", "data.n_synthetic_test=40", "run.seed=1"]), tmp_path / "c")
    assert read_jsonl(other.outputs["seed"]) != read_jsonl(first.outputs["seed"])


def test_training_set_grows_by_the_accepted_rows_once(tmp_path):
    def ex(i, **kw):
        return Example(id=f"e{i}", question=f"q{i}", program="ans = 1", answer="1", source="s", **kw)

    previous = write_jsonl(tmp_path / "r0.jsonl", [ex(0), ex(1)])
    accepted = write_jsonl(tmp_path / "acc.jsonl", [ex(1), ex(2, round=1, split="easy")])
    result = grow_training_set(previous, [accepted], tmp_path / "r1")
    assert result.counts.examples == 3
    assert [r["id"] for r in read_jsonl(tmp_path / "r1" / "train.jsonl")] == ["e0", "e1", "e2"]


def test_an_unknown_benchmark_is_one_line_naming_the_key_and_the_known_ones(tmp_path):
    cfg = load_config(None, ["data.benchmarks=[synthetic-test, gsm8kk]"])
    with pytest.raises(ConfigError) as e:
        prepare_data(cfg, tmp_path / "data")
    assert str(e.value) == ("data.benchmarks: unknown benchmark 'gsm8kk'; known: synthetic-test, gsm8k-train, gsm8k, "
                            "svamp, asdiv, asdiv-2215, asdiv-pal, multiarith, gsm-hard")
    assert not (tmp_path / "data").exists(), "checked before anything is written"
    check_run_values(load_config("demo"))
    check_run_values(load_config("gsm8k"))
