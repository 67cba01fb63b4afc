"""Every model the run reads is checked (issue 14): the base checkpoint and each student carry a manifest of content
hashes, checked before use. 4 KiB overwritten in the base's weights used to give students that were 100% NaN (loss
0.0) and a run that exited 0; now the base is rebuilt (it is built from the config and the seed), and a damaged
student given to `fdd eval` is one line."""

import json
import os
import subprocess

import pytest

from fdd_core.store import tree_sha256

from .conftest import FDD, REPO
from .runs import fdd, last_error, small_run

pytestmark = [pytest.mark.slow, pytest.mark.robustness]


def overwrite_4k(path):
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(os.urandom(4096))


def test_a_damaged_base_is_rebuilt_and_a_damaged_student_is_refused(tmp_path, teacher_server):
    api_base, _ = teacher_server("--error-rate", "0.1")
    args = small_run(tmp_path, api_base)
    run_dir = tmp_path / "runs" / "r"
    first = fdd(tmp_path, args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    base = run_dir / "base"
    intact = tree_sha256(base)

    overwrite_4k(base / "model.safetensors")
    again = fdd(tmp_path, args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "model.safetensors differs from its manifest" in again.stdout + again.stderr
    assert "rebuilding the base checkpoint" in again.stdout + again.stderr
    assert tree_sha256(base) == intact  # the same base again, not the damaged one
    rerun = json.loads((run_dir / "report.json").read_text())
    assert rerun["rounds"][0]["accuracy"] == report["rounds"][0]["accuracy"]

    student = run_dir / "rounds" / "r0" / "student" / "model"
    overwrite_4k(student / "model.safetensors")
    evaluated = subprocess.run([FDD, "eval", "--student", str(student), "--limit", "5",
                                "--out", str(tmp_path / "eval")], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
    assert evaluated.returncode == 2 and "Traceback" not in evaluated.stderr, evaluated.stderr[-3000:]
    assert last_error(evaluated).startswith(f"error: model {student}: model.safetensors differs from its manifest")
