"""Values the schema used to accept and the run could not use are one line at load time, before anything is bought
or built (issue 14): each was a long traceback found only after replies were bought or a base built."""

import pytest

from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError, load_config

pytestmark = pytest.mark.robustness


@pytest.mark.parametrize("override, words", [
    ("data.benchmarks=[]", ["data.benchmarks", "at least 1 item"]),  # was an IndexError after round 0 trained
    (f"run.seed={10**26}", ["run.seed", "less than 4294967296"]),  # numpy refuses seeds >= 2**32
    ("run.seed=-1", ["run.seed", "greater than or equal to 0"]),
    ("sandbox.timeout_s=1e7", ["sandbox.timeout_s", "less than or equal to 3600"]),  # OverflowError in the sandbox
    ("sandbox.workers=100000", ["sandbox.workers", "less than or equal to 256"]),  # all started at once
    ("teacher.concurrency=1000000", ["teacher.concurrency", "less than or equal to 1024"]),
    ("data.benchmarks=[gsm8k, gsm8k]", ["data.benchmarks", "listed twice"]),
    ("run.gpu_work_pool=gpu/pool", ["run.gpu_work_pool", "should match pattern"]),  # it names deployments FLOW/POOL
    ("run.gpu_work_pool=''", ["run.gpu_work_pool", "at least 1 character"]),
])
def test_a_value_the_run_cannot_use_is_one_line_naming_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("demo", [override])
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--set {override}: ")
    for word in words:
        assert word in message, message


def test_a_duplicated_yaml_key_is_refused_naming_file_and_both_lines(tmp_path):
    profile = tmp_path / "dup.yaml"
    profile.write_text("run:\n  name: first\n  rounds: 1\n  name: second\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(profile))
    assert str(e.value) == f"{profile}:4: run.name: duplicated key (first at {profile}:2)"


def test_a_duplicated_section_is_refused_too(tmp_path):
    profile = tmp_path / "dup.yaml"
    profile.write_text("run:\n  rounds: 1\nteacher:\n  k_solutions: 2\nrun:\n  rounds: 3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:5: run: duplicated key \(first at .*dup.yaml:1\)"):
        load_config(str(profile))


def test_values_at_the_bounds_still_load():
    cfg = load_config("demo", [f"run.seed={2**32 - 1}", "sandbox.timeout_s=3600", "sandbox.workers=256",
                               "data.benchmarks=[synthetic-test, gsm8k]"])
    assert cfg.run.seed == 2**32 - 1 and cfg.sandbox.workers == 256


def test_training_packing_unset_packs_on_the_cpu_and_pads_on_cuda_where_packed_rows_trained_slower():
    from fdd_core.student.train import packs_on

    assert FDDConfig().training.packing is None
    assert packs_on(None, "cpu") and not packs_on(None, "cuda") and not packs_on(None, "cuda:0")
    assert packs_on(True, "cuda") and not packs_on(False, "cpu")  # a setting of the user's wins either way
