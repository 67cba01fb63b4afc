"""House rules that keep the project installable and layered."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = _bash_blocks(setup)
    assert len(commands) == 2, commands
    assert all(c.startswith("python3 -m venv .venv && ") and "\n" not in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_fdd_core_never_imports_prefect():
    # Import every module of the library in a fresh interpreter: transitive imports count too.
    code = (
        "import importlib, pkgutil, sys, fdd_core\n"
        "for m in pkgutil.walk_packages(fdd_core.__path__, 'fdd_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'prefect'))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _task_functions():
    import ast

    for path in sorted((REPO / "tasks").glob("*.py")):
        tree = ast.parse(path.read_text())
        stage_names = {
            alias.asname or alias.name
            for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fdd_core.")
            for alias in node.names
        }
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                "task" in ast.unparse(d) for d in node.decorator_list
            ):
                yield path.name, node, stage_names


def test_tasks_hold_no_stage_logic():
    # A task is a wrapper: a few statements, one fdd_core stage call, no loops of its own.
    import ast

    tasks = list(_task_functions())
    assert len(tasks) >= 7
    for file, fn, stage_names in tasks:
        calls = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        stages = calls & stage_names - {"record_stage", "read_jsonl"}
        assert len(stages) == 1, f"{file}:{fn.name} calls {sorted(stages)}"
        assert not any(isinstance(n, (ast.For, ast.While)) for n in ast.walk(fn)), f"{file}:{fn.name} loops"
        assert len(fn.body) <= 6, f"{file}:{fn.name} has {len(fn.body)} statements"


@pytest.mark.slow
def test_an_installed_wheel_has_its_profiles_prompts_and_samples(tmp_path):
    # `pip install fdd` (not editable) must run the embedded default: profiles, prompts and sample
    # programs live in the package. Built without isolation when setuptools is here (no download).
    try:
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    # a copy of the sources: setuptools builds in the source tree, and a stale build/ there would hide a file
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", "bench-runs", ".gpu", ".pytest_cache"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"), str(source)], check=True,
                   cwd=tmp_path, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("fdd-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import fdd_core; from fdd_core.profiles import load_config; from fdd_core.teacher.prompts import load_prompt\n"
        "assert fdd_core.__file__.startswith(sys.argv[1]), fdd_core.__file__\n"
        "print(load_config('demo').data.n_seed, load_config('gsm8k').data.benchmarks[0],"
        " *(load_prompt(k).name for k in ('solve', 'harder', 'similar')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["400", "gsm8k"], out.stdout
    assert list((tmp_path / "site" / "fdd_core" / "samples").glob("*.jsonl")), "sample programs missing"
