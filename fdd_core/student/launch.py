"""Training on several processes: the parent side. `training.processes` > 1 runs the training stage under torchrun
(torch.distributed.run) as that many data-parallel workers (fdd_core/student/train_worker.py); the Trainer sees
torchrun's environment and trains with DDP (nccl on CUDA, gloo on the CPU).

The parent streams the workers' output (progress lines to the stage's tracker, the rest to the log), raises the
failing worker's error line when one dies, and stops the whole family on an interrupt: torchrun first (it stops its
workers), then any worker still running, by the PID it announced. The workers' stdin is a pipe only the parent
writes to: if the parent dies however it dies (SIGKILL included), it reads EOF and every worker exits. Rank 0 alone writes the model, the logs and the
MANIFEST, the same files as one process writes; the parent reads back the result rank 0 recorded.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..config import FDDConfig, batch_split_error
from ..config_files import ConfigError
from ..progress import track
from ..results import TrainResult

log = logging.getLogger(__name__)

# What a worker writes on stdout for the parent, one JSON object after the tag on its own line.
PROGRESS, ERROR, STARTED = "FDD-TRAIN-PROGRESS ", "FDD-TRAIN-ERROR ", "FDD-TRAIN-WORKER "
PARENT_PIPE = "FDD_TRAIN_PARENT_PIPE"  # set: the workers' stdin is a pipe that only the parent writes to
STOP_WAIT_S = 30.0  # torchrun's own grace for its workers is 30 s after SIGTERM


class TrainingWorkerError(RuntimeError):
    """A training worker died; the message is its error line (rank, exception type and text)."""


def launched_worker() -> bool:
    """True inside a process torchrun started (it sets TORCHELASTIC_RUN_ID): train here, do not launch again."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def per_process_batch(cfg: FDDConfig) -> int:
    """Examples each process takes per step (the global batch, training.batch_size, is the same at any count)."""
    if (split := batch_split_error(cfg.training)) is not None:
        raise ConfigError(split)
    return cfg.training.batch_size // cfg.training.processes


def check_processes(cfg: FDDConfig, device: str, gpus: int) -> None:
    """One line when training.processes cannot run here: not dividing the batch, or more than the GPUs on CUDA."""
    per_process_batch(cfg)
    if device == "cuda" and cfg.training.processes > gpus:
        raise ConfigError(f"training.processes={cfg.training.processes} needs as many GPUs; {gpus} visible "
                          f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")


def torchrun_command(processes: int, job: Path) -> list[str]:
    """torchrun on this machine alone (--standalone picks a free rendezvous port), no restarts: a failed worker
    fails the stage, which the pipeline's own resume then redoes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "--max-restarts=0", "-m", "fdd_core.student.train_worker", str(job)]


def train_in_processes(cfg: FDDConfig, train_path: Path, out_dir: Path, *, base: Path | str,
                       previous: Path | None = None,
                       progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """train_student over cfg.training.processes workers; returns the TrainResult rank 0 recorded."""
    import torch

    from .factory import resolve_device

    device = resolve_device(cfg.training.device)
    check_processes(cfg, device, torch.cuda.device_count() if device == "cuda" else 0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".launch-") as tmp:
        job, result_path = Path(tmp, "job.json"), Path(tmp, "result.json")
        job.write_text(json.dumps({
            "config": cfg.model_dump(mode="json"), "train_path": str(train_path), "out_dir": str(out_dir),
            "base": str(base), "previous": str(previous) if previous else None, "result": str(result_path),
        }), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PIPE: "1"}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.training.processes)))
        with track("train", "steps", 0, processes=cfg.training.processes) as tracker:
            proc = subprocess.Popen(torchrun_command(cfg.training.processes, job), env=env, cwd=os.getcwd(),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1, start_new_session=True)
            workers: list[int] = []
            try:
                error, tail = _follow(proc, tracker, progress, workers)
            finally:
                _stop(proc, workers)  # on an interrupt or a failure here; a no-op once all have exited
            if proc.returncode != 0 or not result_path.is_file():
                raise TrainingWorkerError(error or f"training under torchrun failed (exit {proc.returncode}); "
                                                   "its last output:\n" + "\n".join(tail))
        return TrainResult.model_validate_json(result_path.read_text(encoding="utf-8"))


def _follow(proc: subprocess.Popen, tracker, progress, workers: list[int]) -> tuple[str | None, deque]:
    """Read the workers' output to its end: progress to the tracker, PIDs to `workers`, the rest to the log.
    Returns the failure to report (None when no worker failed) and the last lines of output."""
    errors: dict[int, str] = {}  # rank -> the error line that rank wrote
    peers: set[int] = set()  # ranks whose error was losing another worker (it only follows that one's failure)
    tail: deque = deque(maxlen=40)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tag = next((t for t in (PROGRESS, STARTED, ERROR) if line.startswith(t)), None)
        record, rest = _record(line[len(tag):]) if tag else (None, line)
        if tag == PROGRESS and record is not None:
            tracker(record["done"], record["total"], **record["facts"])
            if progress is not None:
                progress(record["done"], record["total"])
        elif tag == STARTED and record is not None:
            workers.append(int(record["pid"]))
        elif tag == ERROR and record is not None:
            rank = int(record["rank"])
            if rank not in errors:
                errors[rank] = record["error"]
                if record.get("peer"):
                    peers.add(rank)
        line = rest if record is not None else line
        if line.strip():
            tail.append(line)
            log.info("%s", line)
    proc.wait()
    return first_failure(errors, peers, list(tail)), tail


def _record(text: str) -> tuple[dict | None, str]:
    """A worker's record and what follows it on the same line: the workers share one pipe, so another process's
    output can land right after a record (seen once on a full disk); a line that holds no record is left to the log."""
    try:
        record, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None, text
    return (record, text[end:]) if isinstance(record, dict) else (None, text)


def first_failure(errors: dict[int, str], peers: set[int], lines: list[str]) -> str | None:
    """The failure that caused the others. A worker's own error (a full disk, out of memory) comes first: torchrun's
    "Root Cause" is only the first exit it observed, to the second, and a worker that lost its peer can abort before
    the failing one has exited (seen in CI: rank 1 aborted at exit while rank 0 still reported its full disk). Then
    the root cause torchrun names: its error line, or how it died (a killed worker writes none). Errors in `peers`
    (a lost connection) only follow another's failure."""
    own = [rank for rank in errors if rank not in peers]
    root = _root_cause(lines)
    if root is not None and (not own or root[0] in own):
        rank, how = root
        return errors.get(rank) or f"training worker rank {rank} died: {how}"
    return errors[own[0]] if own else next(iter(errors.values()), None)


def _root_cause(lines: list[str]) -> tuple[int, str] | None:
    """(rank, "exitcode -9 (SIGKILL)") from torchrun's failure summary, None when it printed none."""
    marks = [i for i, line in enumerate(lines) if "Root Cause" in line]
    if not marks:
        return None
    fields = {}
    for line in lines[marks[-1] + 1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("rank", "exitcode", "traceback") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if "rank" not in fields:
        return None
    rank = int(fields["rank"].split()[0])
    how = " ".join(f"{k} {fields[k]}" for k in ("exitcode", "traceback") if k in fields)
    return rank, how


def _stop(proc: subprocess.Popen, workers: list[int]) -> None:
    """The workers' stdin is closed (each then exits at once: train_worker watches it), torchrun gets SIGTERM (it
    stops its workers and waits for them), SIGKILL if it outlives the grace; then any worker still alive is killed
    by PID (torchrun starts each in a session of its own)."""
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT_S + 5)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 5
    for pid in workers:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False
