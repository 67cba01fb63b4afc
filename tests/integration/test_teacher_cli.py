"""`fdd teacher solve` then `fdd check-data`: how a user vets a teacher before paying for a run."""

import re

import pytest

from fdd_core import synthetic
from fdd_core.store import write_jsonl

from tests.integration.test_cli import fdd


def passed_share(stdout: str) -> float:
    passed, failed = map(int, re.search(r"^(\d+) passed, (\d+) failed$", stdout, flags=re.M).groups())
    return passed / (passed + failed)


def test_solve_a_problem_file_then_the_rerun_is_free(tmp_path):
    seeds, _ = synthetic.make_splits(n_seed=30, n_test=0, seed=1)
    path = write_jsonl(tmp_path / "seeds.jsonl", seeds)
    args = ("teacher", "solve", str(path), "--out-dir", str(tmp_path / "out"),
            "--set", f"teacher.cache_path={tmp_path / 'cache.sqlite'}")
    first = fdd(*args)
    assert first.returncode == 0, first.stderr
    assert "120 candidates" in first.stdout and "teacher: 120 requests, 0 cached" in first.stdout
    second = fdd(*args)
    assert "teacher: 0 requests, 120 cached" in second.stdout
    check = fdd("check-data", str(tmp_path / "out" / "check.jsonl"))
    # the offline teacher's default error rate damages about 10% of replies on purpose
    assert 0.8 <= passed_share(check.stdout) < 1.0


def test_unknown_benchmark_is_one_line(tmp_path):
    r = fdd("teacher", "solve", "gsm9k", "--out-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "gsm8k-train" in r.stderr


@pytest.mark.slow
def test_offline_teacher_solves_99pct_of_gsm8k_train_as_check_data_shows(tmp_path, data_dir):
    solve = fdd("teacher", "solve", "gsm8k-train", "--out-dir", str(tmp_path / "out"),
                "--set", f"teacher.cache_path={tmp_path / 'cache.sqlite'}", "--set", "teacher.k_solutions=1",
                "--set", "teacher.offline_error_rate=0", env={"FDD_DATA_DIR": str(data_dir)})
    assert solve.returncode == 0, solve.stderr
    assert "7473 candidates" in solve.stdout
    check = fdd("check-data", str(tmp_path / "out" / "check.jsonl"))
    assert check.returncode == 0
    assert passed_share(check.stdout) >= 0.99
