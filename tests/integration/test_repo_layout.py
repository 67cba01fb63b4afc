"""House rules checked in a fresh interpreter: what importing the library pulls in, and what an installed
wheel holds. They start processes, so they live here; the source-only checks are in tests/unit/test_repo.py."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_importing_fdd_core_pulls_in_no_prefect_flows_tasks_or_cli():
    # Import every module of the library in a fresh interpreter: transitive imports count too
    # (imports inside functions do not run here: tests/unit/test_repo.py reads those from the sources).
    code = (
        "import importlib, pkgutil, sys, fdd_core\n"
        "for m in pkgutil.walk_packages(fdd_core.__path__, 'fdd_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('prefect', 'flows', 'tasks', 'fdd_cli')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


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
        "import fdd_core; from fdd_core.config_files import load_config; from fdd_core.teacher.prompts import load_prompt\n"
        "assert fdd_core.__file__.startswith(sys.argv[1]), fdd_core.__file__\n"
        "import fdd_cli.main; assert fdd_cli.main.__file__.startswith(sys.argv[1]), fdd_cli.main.__file__\n"
        "print(load_config('demo').data.n_seed, load_config('gsm8k').data.benchmarks[0],"
        " *(load_prompt(k).name for k in ('solve', 'harder', 'similar')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["400", "gsm8k"], out.stdout
    assert list((tmp_path / "site" / "fdd_core" / "samples").glob("*.jsonl")), "sample programs missing"
    entry_points = next((tmp_path / "site").glob("fdd-*.dist-info/entry_points.txt")).read_text()
    assert "fdd = fdd_cli.main:app" in entry_points.splitlines(), entry_points
