"""Stage cache keys hold what changes a stage's output and nothing else; tasks retry only transient failures."""

import pytest
from prefect import Task
from prefect.states import Failed

import tasks.stages
from fdd_core.benchmarks import BenchmarkError
from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError
from fdd_core.store import DataFileError
from fdd_core.teacher.client import TeacherConfigError
from tasks.caching import NOT_IN_OUTPUTS, is_permanent, retry_transient, stage_cache_key

TEACHER = ["teacher", "budget", "curation", "sandbox", "run.seed"]


def key_of(fn, cfg: FDDConfig, **parameters) -> str:
    return fn(None, {"cfg": cfg, **parameters})


def changed(**sections) -> FDDConfig:
    """The default config with `sections` ({"teacher": {"concurrency": 3}}) changed."""
    cfg = FDDConfig()
    return cfg.model_copy(update={name: getattr(cfg, name).model_copy(update=values)
                                  for name, values in sections.items()})


SPEED_ONLY = [
    {"teacher": {"concurrency": 3}}, {"teacher": {"cache_path": "/elsewhere/teacher.sqlite"}},
    {"teacher": {"api_key_env": "OTHER_KEY"}}, {"sandbox": {"workers": 1}}, {"inference": {"batch_size": 7}},
    {"inference": {"vllm_python": "/opt/vllm/bin/python"}}, {"inference": {"tensor_parallel_size": 2}},
    {"inference": {"data_parallel_size": 4}}, {"training": {"processes": 2}},
]
MATTERS = [
    {"teacher": {"timeout_s": 5.0}}, {"teacher": {"max_retries": 0}}, {"teacher": {"model": "gpt-4o-mini"}},
    {"sandbox": {"timeout_s": 9.0}}, {"sandbox": {"memory_mb": 512}}, {"inference": {"max_new_tokens": 9}},
    {"inference": {"backend": "vllm"}}, {"run": {"seed": 7}}, {"training": {"batch_size": 16}},
]


def test_speed_only_settings_are_the_ones_left_out():
    assert set(NOT_IN_OUTPUTS) == {"teacher.concurrency", "teacher.cache_path", "teacher.api_key_env",
                                   "teacher.max_failed_share",
                                   "sandbox.workers", "inference.batch_size", "inference.vllm_python",
                                   "inference.tensor_parallel_size", "inference.data_parallel_size",
                                   "training.processes"}


@pytest.mark.parametrize("change", SPEED_ONLY, ids=lambda c: str(c))
def test_a_speed_only_setting_keeps_every_key(change):
    fn = stage_cache_key("s", 1, [*TEACHER, "inference", "training"], [])
    assert key_of(fn, changed(**change)) == key_of(fn, FDDConfig())


@pytest.mark.parametrize("change", MATTERS, ids=lambda c: str(c))
def test_a_setting_that_changes_outputs_changes_the_key(change):
    fn = stage_cache_key("s", 1, [*TEACHER, "inference", "training"], [])
    assert key_of(fn, changed(**change)) != key_of(fn, FDDConfig())


def test_exclude_names_its_own_fields_and_the_version_is_in_the_key():
    everything = stage_cache_key("s", 1, ["teacher"], [], exclude=())
    assert key_of(everything, changed(teacher={"concurrency": 3})) != key_of(everything, FDDConfig())
    own = stage_cache_key("s", 1, ["teacher"], [], exclude=["teacher.temperature"])
    assert key_of(own, changed(teacher={"temperature": 0.1})) == key_of(own, FDDConfig())
    assert key_of(own, changed(teacher={"concurrency": 3})) != key_of(own, FDDConfig())
    assert key_of(stage_cache_key("s", 2, ["teacher"], []), FDDConfig()).startswith("s-v2-")
    assert key_of(stage_cache_key("s", 2, ["teacher"], []), FDDConfig()) != key_of(
        stage_cache_key("s", 1, ["teacher"], []), FDDConfig())


def test_train_keys_leave_out_only_the_process_count():
    # train reads student, training and run.seed; of the speed settings only training.processes is among them, and
    # leaving it out hashes the training section as it was before the field existed: cached rounds stay valid
    fields = ["student", "run.seed", "training"]
    assert key_of(stage_cache_key("train", 2, fields, []), FDDConfig(), previous=None) == key_of(
        stage_cache_key("train", 2, fields, [], exclude=("training.processes",)), FDDConfig(), previous=None)


def test_ignored_parameters_and_other_parameters():
    fn = stage_cache_key("s", 1, ["teacher"], [], ignore=["spent", "run"])
    assert key_of(fn, FDDConfig(), spent=1, run="a", round_index=1) == key_of(
        fn, FDDConfig(), spent=2, run="b", round_index=1)
    assert key_of(fn, FDDConfig(), round_index=1) != key_of(fn, FDDConfig(), round_index=2)


def test_unknown_or_contradictory_fields_fail_when_the_task_is_defined():
    with pytest.raises(ValueError, match="teacher.concurency"):
        stage_cache_key("s", 1, ["teacher.concurency"], [])
    with pytest.raises(ValueError, match="inference.batchsize"):
        stage_cache_key("s", 1, ["inference"], [], exclude=["inference.batchsize"])
    with pytest.raises(ValueError, match="run.seed.x"):
        stage_cache_key("s", 1, ["run.seed.x"], [])
    with pytest.raises(ValueError, match="both read and excluded"):
        stage_cache_key("s", 1, ["teacher.concurrency"], [])


@pytest.mark.parametrize("error", [
    TeacherConfigError("teacher.api_key_env is 'X' but that environment variable is not set"),
    ConfigError("inference.vllm_python=/nope: no such executable file"), BenchmarkError("no gsm8k"),
    DataFileError("bad.jsonl line 3"), ValueError("bad data"), TypeError("bug"), ImportError("no peft"),
])
def test_config_and_data_errors_are_not_retried(error):
    assert is_permanent(error)
    assert retry_transient(None, None, Failed(data=error)) is False


@pytest.mark.parametrize("error", [TimeoutError("slow"), ConnectionError("reset"), OSError(28, "No space left"),
                                   RuntimeError("CUDA out of memory"), Exception("worker lost")])
def test_transient_failures_are_retried(error):
    assert retry_transient(None, None, Failed(data=error)) is True


def test_an_error_raised_from_a_config_error_is_not_retried():
    try:
        try:
            raise TeacherConfigError("no key")
        except TeacherConfigError as e:
            raise RuntimeError("teacher stage failed") from e
    except RuntimeError as wrapped:
        assert retry_transient(None, None, Failed(data=wrapped)) is False


def test_a_failed_state_without_an_exception_keeps_prefects_default():
    assert retry_transient(None, None, Failed(message="returned Failed")) is True


def test_every_task_with_retries_retries_only_transient_failures():
    retried = [t for t in vars(tasks.stages).values() if isinstance(t, Task) and t.retries]
    assert {t.name for t in retried} == {"generate-solutions", "generate-variants", "evaluate", "feedback"}
    for t in retried:
        assert t.retry_condition_fn is retry_transient, t.name


def test_the_gpu_work_pool_is_in_no_stage_key():
    # a run resumed with or without run.gpu_work_pool finds the stages it finished in the other layout
    from tasks import stages

    pooled = changed(run={"gpu_work_pool": "gpu-pool"})
    for task in (stages.train_task, stages.evaluate_task, stages.feedback_task, stages.generate_solutions_task,
                 stages.generate_variants_task):
        names = [n for n in task.fn.__code__.co_varnames[:task.fn.__code__.co_argcount] if n != "cfg"]
        params = {n: "/nowhere" for n in names}
        assert task.cache_key_fn(None, {"cfg": pooled, **params}) == task.cache_key_fn(None, {"cfg": FDDConfig(),
                                                                                              **params}), task.name
