"""Resolve an FDDConfig from a YAML profile plus dotted `--set key=value` overrides.

Any mistake becomes one ConfigError line naming the file and line (or the override), the dotted
key and the reason, e.g. `configs/x.yaml:4: teacher.concurency: unknown key (did you mean
'teacher.concurrency'?)`. Nothing runs on a config that did not validate.
"""

from __future__ import annotations

import copy
import typing
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fdd_core.config import FDDConfig, batch_split_error, precision_error

# In the package, so an installed (not editable) fdd has its profiles; configs/ at the repo root links here.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used; str() is one line naming where, which key, and why."""


def profile_path(name_or_path: str | Path) -> Path:
    """A YAML file path, or the name of a profile in configs/ (e.g. 'demo')."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    named = CONFIGS_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(f"config '{name_or_path}': no such file, and no profile of that name (profiles: {known})")


def load_config(source: str | Path | None = None, overrides: Sequence[str] = ()) -> FDDConfig:
    """Defaults, then the profile (a path or a profile name), then each `key=value` override in order."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}  # dotted key -> "file:line" or "--set key=value"
    if source is not None:
        path = profile_path(source)
        data, origin = _read_profile(path)
    return _resolve(data, origin, overrides)


def apply_overrides(base: dict[str, Any], overrides: Sequence[str], where: str) -> FDDConfig:
    """`base` (a config as a mapping, e.g. a deployment's `cfg` parameter) with each `key=value` override
    applied in order, validated like load_config; an error in `base` itself names `where`."""
    data = copy.deepcopy(base)
    return _resolve(data, {key: where for key, _ in _dotted_keys(data)}, overrides)


def _dotted_keys(data: dict[str, Any], prefix: str = ""):
    for key, value in data.items():
        yield f"{prefix}{key}", value
        if isinstance(value, dict):
            yield from _dotted_keys(value, f"{prefix}{key}.")


def _resolve(data: dict[str, Any], origin: dict[str, str], overrides: Sequence[str]) -> FDDConfig:
    for override in overrides:
        key, value = _parse_override(override)
        _check_key(key, f"--set {override}")
        _set_dotted(data, key, value, f"--set {override}")
        origin[key] = f"--set {override}"
    try:
        cfg = FDDConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, origin)) from None
    _check_together(cfg, origin)
    return cfg


def _check_together(cfg: FDDConfig, origin: dict[str, str]) -> None:
    """Settings each valid alone that cannot work together, named before anything starts."""
    if "synthetic-test" in cfg.data.benchmarks and cfg.data.seed_set != "synthetic":
        where = origin.get("data.seed_set") or origin.get("data.benchmarks") or "config"
        raise ConfigError(f"{where}: data.seed_set={cfg.data.seed_set} cannot go with synthetic-test in "
                          f"data.benchmarks (the held-out synthetic set exists only with data.seed_set: synthetic); "
                          f"set the benchmarks too, e.g. --set 'data.benchmarks=[gsm8k]'")
    if (split := batch_split_error(cfg.training)) is not None:
        where = origin.get("training.processes") or origin.get("training.batch_size") or "config"
        raise ConfigError(f"{where}: {split}")
    if (mismatch := precision_error(cfg.training)) is not None:
        where = origin.get("training.precision") or origin.get("training.device") or "config"
        raise ConfigError(f"{where}: {mismatch}")


def config_to_yaml(cfg: FDDConfig) -> str:
    """The resolved config as YAML, every field written out, for the run directory."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _read_profile(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    origin: dict[str, str] = {}
    for key, line in _key_lines(root):
        if key in origin:  # YAML keeps the last of duplicated keys silently: refuse instead
            raise ConfigError(f"{path}:{line}: {key}: duplicated key (first at {origin[key]})")
        origin[key] = f"{path}:{line}"
    for key, where in origin.items():
        _check_key(key, where)
    return data, origin


def _key_lines(node: yaml.Node, prefix: str = ""):
    """(dotted key, 1-based line) for every mapping key in a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            yield key, key_node.start_mark.line + 1
            yield from _key_lines(value_node, key + ".")


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. teacher.model=gpt-4o-mini")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: take it as a plain string
    return key, value


def _check_key(dotted: str, where: str) -> None:
    """Walk the schema along a dotted key; an unknown part is an error with a close match if one exists."""
    model: type[BaseModel] | None = FDDConfig
    walked: list[str] = []
    named: type[BaseModel] | None = None  # the value model of a dict[str, Model] field: its next part is a name
    for part in dotted.split("."):
        if named is not None:
            model, named = named, None
            walked.append(part)
            continue
        if model is None:
            raise ConfigError(f"{where}: {'.'.join(walked)} is a value, not a section (no key '{part}')")
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f" (did you mean '{'.'.join([*walked, close[0]])}'?)" if close else ""
            raise ConfigError(f"{where}: {'.'.join([*walked, part])}: unknown key{hint}")
        walked.append(part)
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        named = _named_model(annotation)


def _named_model(annotation: Any) -> type[BaseModel] | None:
    """Model for dict[str, Model] (data.user_benchmarks: NAME.path, NAME.question...), else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        value = args[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {part} must be a mapping of keys")
        node = child
    node[leaf] = value


def _describe(error: ValidationError, origin: dict[str, str]) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    # Point at the deepest key we know the origin of (a list item reports its list).
    where = next((origin[k] for k in _prefixes(key) if k in origin), "config")
    got = f" (got {first['input']!r})" if first["type"] not in {"missing", "extra_forbidden"} else ""
    more = error.error_count() - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {key}: {first['msg']}{got}{tail}"


def _prefixes(dotted: str):
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])
