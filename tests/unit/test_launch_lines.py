"""The training stage reads its workers' records from one shared pipe: another process's output on the same line
must neither crash the stage nor lose the record (fresh-clone CI once failed the full-disk test with
'JSONDecodeError: Extra data' there)."""

from fdd_core.student.launch import _record, first_failure


def test_a_record_followed_by_another_processs_output_keeps_both():
    record, rest = _record('{"rank": 1, "pid": 4242}[rank0]: OSError: No space left on device')
    assert record == {"rank": 1, "pid": 4242} and rest == "[rank0]: OSError: No space left on device"


def test_a_torn_record_is_left_to_the_log_instead_of_stopping_the_stage():
    assert _record('{"rank": 1, "pi') == (None, '{"rank": 1, "pi')
    assert _record("[1, 2]") == (None, "[1, 2]")


def summary(rank: int, exitcode: str, traceback: str) -> list[str]:
    """The end of torchrun's failure summary as it prints it, naming `rank` the root cause."""
    return ["fdd_core.student.train_worker FAILED", "Root Cause (first observed failure):", "[0]:",
            "  time      : 2026-11-28_03:41:07", "  host      : localhost",
            f"  rank      : {rank} (local_rank: {rank})", f"  exitcode  : {exitcode}", "  error_file: <N/A>",
            f"  traceback : {traceback}"]


DISK = "training worker rank 0 failed: SafetensorError: Error while serializing: I/O error: No space left on device"
LOST = ("training worker rank 0 failed: RuntimeError: [third_party/gloo/gloo/transport/tcp/pair.cc:537] "
        "Read error [127.0.0.1]:8586: Connection reset by peer.")


def test_a_workers_own_error_wins_over_a_peer_that_aborted_first():
    """Fresh-clone CI: rank 0 could not save on a full disk, rank 1 (exiting after training) aborted on the lost
    connection a poll earlier, so torchrun named rank 1 the root cause. The user must read the full disk."""
    aborted = summary(1, "-6 (pid: 6649)  (SIGABRT)", "Signal 6 (SIGABRT) received by PID 6649")
    assert first_failure({0: DISK}, set(), aborted) == DISK


def test_a_killed_worker_is_named_when_the_others_only_lost_it():
    killed = summary(1, "-9 (pid: 6649)  (SIGKILL)", "Signal 9 (SIGKILL) received by PID 6649")
    assert first_failure({0: LOST}, {0}, killed) == ("training worker rank 1 died: exitcode -9 (pid: 6649)  (SIGKILL) "
                                                     "traceback Signal 9 (SIGKILL) received by PID 6649")


def test_the_root_causes_own_error_is_reported():
    other = "training worker rank 1 failed: OutOfMemoryError: CUDA out of memory."
    exited = summary(1, "1 (pid: 6649)", "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html")
    assert first_failure({0: DISK, 1: other}, set(), exited) == other
    assert first_failure({0: LOST}, {0}, []) == LOST  # no summary (torchrun itself killed): still a line
