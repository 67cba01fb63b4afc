"""Shared integration fixtures: the offline teacher served over real HTTP on 127.0.0.1; GSM8K test and its index."""

import json
import os
import select
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FDD = shutil.which("fdd", path=str(Path(sys.executable).parent)) or "fdd"


def read_log(path: Path) -> list[dict]:
    """The server's request log: one dict per request it served."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def time_of(line: dict) -> float:
    """When the server logged a request of its log (its reply's end), in seconds since the epoch (ms resolution)."""
    return datetime.fromisoformat(line["time"]).timestamp()


def arrival_of(line: dict) -> float:
    """When a request of the server's log reached it: its logged end less its duration."""
    return time_of(line) - line["duration_ms"] / 1000


@pytest.fixture
def teacher_server(tmp_path):
    """start(*flags) -> (api_base, log path): `fdd teacher serve` on a free port, stopped at the end."""
    procs: list[subprocess.Popen] = []

    def start(*flags: str) -> tuple[str, Path]:
        log = tmp_path / f"server{len(procs)}.jsonl"
        proc = subprocess.Popen(
            [FDD, "teacher", "serve", "--host", "127.0.0.1", "--port", "0", "--log", str(log), *flags],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                seen.append(line)
                if "serving on http://" in line:
                    return line.split()[-1], log
        pytest.fail(f"teacher server did not start: {''.join(seen)[-2000:]}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gsm8k_test(data_dir):
    """GSM8K test (1,319 problems) from the shared data folder."""
    from fdd_core.benchmarks import load_benchmark

    return load_benchmark("gsm8k", source="local", data_dir=data_dir).problems


@pytest.fixture(scope="module")
def gsm8k_index(gsm8k_test):
    """The decontamination index of GSM8K test, with the default n-gram length."""
    from fdd_core.config import CurationConfig
    from fdd_core.similarity import ContaminationIndex

    return ContaminationIndex.from_problems(gsm8k_test, n=CurationConfig().decontamination_ngram)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (room for ~18 replies), grown by calling the returned function with a size."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", "-l", str(mount)], check=False)
