"""Config: defaults run, profiles load, overrides apply, and every mistake is one line naming where."""

import typing

import pytest
from pydantic import BaseModel

from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError, apply_overrides, config_to_yaml, load_config


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        yield prefix + name, field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}{name}.")
        args = typing.get_args(field.annotation)  # dict[str, Model] (data.user_benchmarks): the Model's fields too
        if typing.get_origin(field.annotation) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            yield from _fields(args[1], f"{prefix}{name}.NAME.")


def test_every_field_has_a_default_and_a_description():
    # The Prefect form shows descriptions as help (Markdown: `<name>` would render as nothing), and `fdd run`
    # must work on defaults alone.
    for key, field in _fields(FDDConfig):
        assert field.description, f"{key} has no description"
        assert "<" not in field.description, f"{key}: Markdown drops <...> from the UI form: {field.description}"
        assert not field.is_required(), f"{key} has no default"
    FDDConfig()


def test_overrides_merge_into_a_deployments_cfg():
    # `fdd deployment run --set`: keys not set keep the deployment's values, not FDDConfig's defaults
    base = load_config("gsm8k").model_dump(mode="json")
    cfg = apply_overrides(base, ["run.rounds=1", "training.batch_size=8"], "deployment fdd/gsm8k")
    assert cfg.run.rounds == 1 and cfg.training.batch_size == 8
    assert cfg.teacher == load_config("gsm8k").teacher and cfg.data.benchmarks[0] == "gsm8k"
    assert base["run"]["rounds"] == 3, "the deployment's parameters are not changed in place"
    with pytest.raises(ConfigError, match=r"^--set training.method=qlora: training.method: Input should be 'full' "
                                          r"or 'lora' \(got 'qlora'\)$"):
        apply_overrides(base, ["training.method=qlora"], "deployment fdd/gsm8k")
    with pytest.raises(ConfigError, match=r"^deployment fdd/x: training.epochs: Input should be greater than 0"):
        apply_overrides({"training": {"epochs": 0}}, [], "deployment fdd/x")


@pytest.mark.parametrize("profile", ["demo", "gsm8k"])
def test_shipped_profiles_load(profile):
    cfg = load_config(profile)
    assert cfg.run.name == profile


def test_overrides_apply_in_order_and_parse_yaml_values():
    cfg = load_config(
        "demo",
        ["teacher.model=gpt-4o-mini", "run.rounds=1", "data.benchmarks=[gsm8k, svamp]",
         "budget.max_usd=2.5", "training.continue_from_previous=true", "run.rounds=2"],
    )
    assert cfg.teacher.model == "gpt-4o-mini"
    assert cfg.run.rounds == 2
    assert cfg.data.benchmarks == ["gsm8k", "svamp"]
    assert cfg.budget.max_usd == 2.5
    assert cfg.training.continue_from_previous is True


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("gsm8k", ["run.seed=7"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["teacher.modle=x"], "--set teacher.modle=x: teacher.modle: unknown key (did you mean 'teacher.model'?)"),
        (["techer.model=x"], "--set techer.model=x: techer: unknown key (did you mean 'teacher'?)"),
        (["teacher.concurrency=0"], "--set teacher.concurrency=0: teacher.concurrency: Input should be greater than or equal to 1 (got 0)"),
        (["training.method=qlora"], "--set training.method=qlora: training.method: Input should be 'full' or 'lora' (got 'qlora')"),
        (["training.lr_scheduler=cosine_with_restarts"], "--set training.lr_scheduler=cosine_with_restarts: training.lr_scheduler: Input should be 'linear', 'cosine', 'constant' or 'constant_with_warmup' (got 'cosine_with_restarts')"),
        (["training.warmup=-1"], "--set training.warmup=-1: training.warmup: Input should be greater than or equal to 0 (got -1)"),
        (["run.rounds=many"], "--set run.rounds=many: run.rounds: Input should be a valid integer, unable to parse string as an integer (got 'many')"),
        (["run.rounds.x=1"], "--set run.rounds.x=1: run.rounds is a value, not a section (no key 'x')"),
        (["teacher"], "--set teacher: expected KEY=VALUE, e.g. teacher.model=gpt-4o-mini"),
        (["training.processes=0"], "--set training.processes=0: training.processes: Input should be greater than or equal to 1 (got 0)"),
        (["training.processes=3"], "--set training.processes=3: training.batch_size=32 is not a multiple of training.processes=3: each process takes batch_size / processes examples of a step (e.g. training.batch_size=33)"),
        (["training.precision=fp8"], "--set training.precision=fp8: training.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16' (got 'fp8')"),
        (["training.precision=fp16"], "--set training.precision=fp16: training.precision=fp16 needs training.device=cuda (it is auto): fp16 autocast is for GPUs; set training.precision to auto, bf16 or fp32"),
        (["inference.data_parallel_size=0"], "--set inference.data_parallel_size=0: inference.data_parallel_size: Input should be greater than or equal to 1 (got 0)"),
    ],
)
@pytest.mark.robustness
def test_bad_override_is_one_line_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value) == expected
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("run:\n  name: x\nteacher:\n  concurency: 3\n", ":4: teacher.concurency: unknown key (did you mean 'teacher.concurrency'?)"),
        ("run:\n  name: x\nteacher:\n  concurrency: -3\n", ":4: teacher.concurrency: Input should be greater than or equal to 1 (got -3)"),
        ("run:\n  name: x\n teacher: [\n", ":3: not valid YAML"),
        ("- a\n- b\n", ": a config must be a mapping of sections, got list"),
        ("data:\n  benchmarks: gsm8k\n", ":2: data.benchmarks: Input should be a valid list (got 'gsm8k')"),
    ],
)
@pytest.mark.robustness
def test_bad_profile_names_file_and_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}{expected}")


@pytest.mark.robustness
def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"no profile of that name \(profiles: demo, gsm8k"):
        load_config("nope")


def test_secrets_have_no_config_field():
    # A key must come from the environment, so no field may hold one.
    keys = [k for k, _ in _fields(FDDConfig)]
    assert [k for k in keys if "key" in k and not k.endswith("_env")] == []
