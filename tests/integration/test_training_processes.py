"""Training on several processes (training.processes, torchrun + DDP over gloo on the CPU) against one process at
the same global batch: the same loss curve, one model saved; a worker that dies fails the stage loudly, and
nothing is left running or recorded as done."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError
from fdd_core.records import Example
from fdd_core.results import TrainResult
from fdd_core.store import MANIFEST, finished_stage, write_jsonl
from fdd_core.student import base_checkpoint, train_student
from fdd_core.student.launch import TrainingWorkerError
from fdd_core.synthetic import make_splits

from tests.processes import is_alive

# 192 examples = 12 full batches of 16 an epoch: every step's batch is the same 16 examples at any process count
# (torchrun's 2 workers take halves of the batch the one-process sampler draws). An epoch that ends on a partial
# batch is filled up to 16 under 2 processes (accelerate's even_batches), so such a step would differ.
ROWS, BATCH, STEPS = 192, 16, 24
# Two processes change only the order of float32 sums (each rank's half, then the gradient all-reduce): measured
# 1.4e-7 relative at worst over these 24 steps. The same run with another batch order (run.seed 1 instead of 0, the
# same start weights) differs by 1.1e-4 to 1.7e-2 a step, so a curve within 1e-5 everywhere means "the same
# batches", with 70x room for other CPUs' and thread counts' rounding.
LOSS_RTOL = 1e-5


def tiny_cfg(processes: int = 1, **training) -> FDDConfig:
    cfg = FDDConfig()
    cfg.student.hidden_size, cfg.student.num_layers, cfg.student.num_heads = 64, 2, 2
    # fp32: the loss curves are compared at 1e-5, finer than bf16's rounding (auto takes bf16 on CPUs that have it)
    for key, value in {"device": "cpu", "precision": "fp32", "max_steps": STEPS, "batch_size": BATCH, "learning_rate": 3e-3,
                       "logging_steps": 1, "processes": processes, **training}.items():
        setattr(cfg.training, key, value)
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("procs")
    rows = [Example(id=p.id, question=p.question, program=p.solution, answer=p.answer, source=p.source)
            for p in make_splits(ROWS, 0, seed=0)[0]]
    train = write_jsonl(work / "train.jsonl", rows)
    return train, base_checkpoint(tiny_cfg(), work, [t for e in rows for t in (e.question, e.program)])


def torchrun_family() -> list[psutil.Process]:
    """torchrun and its workers: other children of this pytest process (a session's sandbox pool, servers of other
    tests) are not the stage's."""
    family = []
    for child in psutil.Process().children():
        if "torch.distributed.run" in " ".join(child.cmdline()):
            family.extend([child, *child.children(recursive=True)])
    return family


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.slow
def test_two_processes_follow_one_process_loss_curve_and_save_one_model(tmp_path, data):
    from transformers import AutoModelForCausalLM

    train, base = data
    one = train_student(tiny_cfg(1), train, tmp_path / "one", base=base)
    seen: list[tuple[int, int]] = []
    two = train_student(tiny_cfg(2), train, tmp_path / "two", base=base, progress=lambda d, t: seen.append((d, t)))

    curve1, curve2 = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(curve1) == len(curve2) == STEPS
    worst = max(abs(a - b) / a for a, b in zip(curve1, curve2))
    assert worst <= LOSS_RTOL, (worst, curve1, curve2)
    assert curve2[-1] < 0.8 * curve2[0]  # it learnt
    assert two.counts.steps == one.counts.steps == STEPS and two.counts.examples == ROWS
    assert seen[-1] == (STEPS, STEPS)  # the workers' progress reached the caller through the parent

    # one model, the same files as one process writes, and the stage recorded as done once
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert [p.name for p in (tmp_path / "two").rglob(MANIFEST)] == [MANIFEST]
    assert finished_stage(tmp_path / "two", {"train": train}, TrainResult) == two
    assert AutoModelForCausalLM.from_pretrained(two.outputs["model"]).num_parameters() > 0
    recorded = json.loads((tmp_path / "two" / "training_config.json").read_text())
    assert recorded["fdd_config"]["training"]["processes"] == 2


def test_a_batch_that_processes_cannot_share_is_refused_in_one_line(tmp_path, data):
    train, base = data
    with pytest.raises(ConfigError, match=r"training\.batch_size=16 is not a multiple of training\.processes=3"):
        train_student(tiny_cfg(3), train, tmp_path / "three", base=base)
    assert not (tmp_path / "three" / "model").exists()


@pytest.mark.slow
def test_a_worker_killed_mid_training_fails_the_stage_and_leaves_nothing(tmp_path, data):
    train, base = data
    killed: list[psutil.Process] = []
    family: list[psutil.Process] = []

    def kill_a_worker(done: int, total: int) -> None:
        if done >= 2 and not killed:  # training is under way: every worker is past its start
            family.extend(torchrun_family())
            workers = family[1:]
            killed.append(workers[-1])
            os.kill(workers[-1].pid, signal.SIGKILL)

    out = tmp_path / "dies"
    with pytest.raises(TrainingWorkerError, match=r"training worker rank \d died: exitcode -9 .*SIGKILL"):
        train_student(tiny_cfg(2, max_steps=2000), train, out, base=base, progress=kill_a_worker)
    assert killed and len(family) == 3
    assert not [p.pid for p in family if is_alive(p)]  # neither torchrun nor a worker is left running
    assert finished_stage(out, {"train": train}, TrainResult) is None
    assert not (out / MANIFEST).exists() and not (out / "model").exists()


@pytest.mark.slow
def test_an_interrupted_parent_stops_torchrun_and_every_worker(tmp_path, data):
    train, base = data
    family: list[psutil.Process] = []

    def interrupt(done: int, total: int) -> None:
        if done >= 2:  # Ctrl-C (or Prefect cancelling the task) lands while the parent streams the workers' output
            family.extend(torchrun_family())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_student(tiny_cfg(2, max_steps=2000), train, tmp_path / "stop", base=base, progress=interrupt)
    assert len(family) == 3 and not [p.pid for p in family if is_alive(p)]
    assert finished_stage(tmp_path / "stop", {"train": train}, TrainResult) is None


KILLED_PARENT = """
import sys
from pathlib import Path
from fdd_core.student import train_student
from tests.integration.test_training_processes import tiny_cfg
train, base, out = sys.argv[1:4]
def say_when_training(done, total):
    if done == 2:
        print("training", flush=True)
train_student(tiny_cfg(2, max_steps=2000), Path(train), Path(out), base=base, progress=say_when_training)
"""


@pytest.mark.slow
@pytest.mark.robustness
def test_workers_stop_when_the_stage_process_is_killed(tmp_path, data):
    """SIGKILL runs no handler in the parent: the workers see their stdin pipe close and exit by themselves."""
    train, base = data
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(train), str(base), str(tmp_path / "out")],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "training"
    family = psutil.Process(parent.pid).children(recursive=True)
    parent.kill()
    parent.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    left = [p.pid for p in alive if is_alive(p)]
    for p in alive:
        p.kill()
    assert len(family) == 3 and not left
    assert finished_stage(tmp_path / "out", {"train": train}, TrainResult) is None


@pytest.mark.slow
@pytest.mark.robustness
def test_a_worker_that_fails_names_its_error_and_nothing_is_recorded_done(tmp_path, data, small_disk):
    """Rank 0 cannot save the model on a full disk: the stage fails with that worker's own error line."""
    train, base = data
    disk, _ = small_disk
    with pytest.raises(TrainingWorkerError, match=r"training worker rank 0 failed: .*No space left on device"):
        train_student(tiny_cfg(2, max_steps=2), train, disk / "out", base=base)
    assert finished_stage(disk / "out", {"train": train}, TrainResult) is None
    assert not (disk / "out" / MANIFEST).exists()
