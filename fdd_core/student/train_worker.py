"""One data-parallel training worker: `torchrun ... -m fdd_core.student.train_worker JOB.json` (launch.py starts it).

Every rank runs train_student on the job; the Trainer reads torchrun's environment (RANK, WORLD_SIZE, ...) and
trains with DDP. Rank 0 writes the model, logs and MANIFEST, reports progress on stdout and records the result at
the job's "result" path. A rank that fails writes one error line for the parent (marked when it only lost a peer),
its traceback to stderr; every rank exits as soon as the launching process is gone (its stdin, a pipe from that
process, reads EOF).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import traceback
from pathlib import Path

from ..config import FDDConfig
from ..progress import Update, listening
from ..store import atomic_write_text
from .launch import ERROR, PARENT_PIPE, PROGRESS, STARTED


def _say(tag: str, record: dict) -> None:
    print(tag + json.dumps(record), flush=True)


def _report(update: Update) -> None:
    if update.stage == "train" and not update.finished:
        _say(PROGRESS, {"done": update.done, "total": update.total, "facts": dict(update.facts)})


def _exit_when_the_parent_goes() -> None:
    """The launching process holds the write end of our stdin: EOF means it is gone or stopping us, so exit now
    (a worker whose stage nobody waits for must not train on for hours)."""
    def wait() -> None:
        try:
            while os.read(0, 4096):  # the bare descriptor: a buffered stdin's lock would stop interpreter exit
                pass
        except (OSError, ValueError):
            pass
        try:
            print("training worker: the training stage's process is gone; stopping", file=sys.stderr, flush=True)
        finally:  # stderr may be that process's pipe, closed with it
            os._exit(1)

    threading.Thread(target=wait, name="fdd-parent-watch", daemon=True).start()


def _lost_a_peer(e: BaseException) -> bool:
    """The error is this worker losing another (a connection closed or reset, a collective cut short): it only
    follows that worker's failure. torch raises its DistError for some; gloo's transport a plain RuntimeError."""
    import torch.distributed as dist

    return isinstance(e, dist.DistError) or "gloo/transport" in str(e)


def _leave_the_group() -> None:
    """Leave the process group before exiting: a gloo group left to interpreter shutdown aborts the process
    (SIGABRT) when a peer has gone meanwhile, and torchrun may then name this worker the failure's root cause."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str]) -> int:
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get(PARENT_PIPE):
        _exit_when_the_parent_goes()
    _say(STARTED, {"rank": rank, "pid": os.getpid()})
    try:
        job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        cfg = FDDConfig.model_validate(job["config"])
        if world != cfg.training.processes:
            raise RuntimeError(f"torchrun started {world} workers for training.processes={cfg.training.processes}")
        from .train import train_student

        with listening(_report) if rank == 0 else contextlib.nullcontext():
            result = train_student(cfg, Path(job["train_path"]), Path(job["out_dir"]), base=job["base"],
                                   previous=Path(job["previous"]) if job["previous"] else None)
        if rank == 0:
            atomic_write_text(Path(job["result"]), result.model_dump_json())
        _leave_the_group()
    except BaseException as e:  # noqa: BLE001 - any failure becomes the parent's one line, then a non-zero exit
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _say(ERROR, {"rank": rank, "error": f"training worker rank {rank} failed: {type(e).__name__}: {message}",
                     "peer": _lost_a_peer(e)})
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
