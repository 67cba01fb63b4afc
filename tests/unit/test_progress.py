"""Progress of long stages: what a stage reports, the line a user reads, the pace of plain lines in a log, and the
terminal's two faces (bars on a TTY, lines in a pipe)."""

import io
import time

import pytest

from fdd_cli.progress import terminal_progress
from fdd_core.progress import PlainLines, Update, describe, listening, track


def update(done, total=800, *, at=30.0, started=0.0, stage="train", unit="steps", **kw):
    return Update(stage=stage, unit=unit, done=done, total=total, started=started, at=at, **kw)


@pytest.mark.parametrize("u, line", [
    (update(200, facts={"loss": 1.23456}), "train: 200/800 steps (25%), loss 1.235, 30s, ~1m30s left"),
    (update(0, at=0.0), "train: 0/800 steps (0%), 0s"),
    (update(800, at=4000.0, finished=True, facts={"loss": 0.5}), "train: 800/800 steps (100%), loss 0.5, done in 1h06m"),
    (update(300, failed=True, finished=True), "train: 300/800 steps (38%), stopped after 30s"),
    # teacher stages: requests done of total, what was bought and what the run has spent; an unknown price says so
    (update(640, 1600, stage="generate-solutions", unit="teacher requests",
            facts={"bought": 600, "stored": 40, "cost_usd": 0.021, "run_cost_usd": 0.05}),
     "generate-solutions: 640/1,600 teacher requests (40%), 600 bought, 40 from the store, spent $0.0210, "
     "run total $0.0500, 30s, ~45s left"),
    (update(5, 10, stage="generate-variants", unit="teacher requests",
            facts={"bought": 5, "stored": 0, "cost_usd": None, "run_cost_usd": None}),
     "generate-variants: 5/10 teacher requests (50%), 5 bought, 0 from the store, spent unknown, "
     "run total unknown, 30s, ~30s left"),
    (update(12, 0, stage="variant-votes", unit="votes"), "variant-votes: 12 votes, 30s"),
    (update(1000, 1000, stage="evaluate", unit="problems", facts={"loss": None}),
     "evaluate: 1,000/1,000 problems (100%), 30s"),
])
def test_describe_reads_as_one_line(u, line):
    assert describe(u) == line


def test_a_tracked_stage_reports_start_steps_and_end_to_every_listener():
    seen, also = [], []
    with listening(seen.append), listening(also.append):
        with track("train", "steps", 3) as tracker:
            for step in (1, 2, 3):
                tracker(step, loss=1.0 / step)
    assert [(u.done, u.finished) for u in seen] == [(0, False), (1, False), (2, False), (3, False), (3, True)]
    assert seen[-2].facts == {"loss": 1 / 3} and seen[-1].fraction == 1.0
    assert also == seen
    with track("train", "steps", 3) as tracker:  # nobody listens any more
        tracker(1)
    assert len(seen) == 5


def test_a_failed_stage_is_reported_failed_and_its_error_goes_on():
    seen = []
    with listening(seen.append), pytest.raises(MemoryError):
        with track("train", "steps", 10) as tracker:
            tracker(4)
            raise MemoryError("out of memory")
    assert seen[-1].finished and seen[-1].failed and seen[-1].fraction == 0.4  # not shown as done


def test_a_broken_listener_never_stops_the_stage(caplog):
    seen = []

    def broken(u):
        raise RuntimeError("progress bar fell over")

    with listening(broken), listening(seen.append):
        with track("evaluate", "problems", 2) as tracker:
            tracker(1)
            tracker(2)
    assert [u.done for u in seen] == [0, 1, 2, 2] and seen[-1].finished
    assert "a progress listener failed on evaluate" in caplog.text


def test_plain_lines_say_start_and_end_at_once_and_the_state_every_few_seconds_whether_it_moved_or_not():
    lines = PlainLines(every_s=5.0)
    assert lines.on_update(update(0, at=100.0, started=100.0)) == ["train: 0/800 steps (0%), 0s"]
    assert lines.on_update(update(10, at=101.0, started=100.0)) == []  # not every step: a log is read by people
    assert lines.due(104.9) == []
    assert lines.due(105.0) == ["train: 10/800 steps (1%), 5s, ~6m35s left"]
    assert lines.due(109.0) == []
    # a step that takes long (a big model on 2 cores): the same state again, its clock moving, every 5 s
    assert lines.due(110.0) == ["train: 10/800 steps (1%), 10s, ~13m10s left"]
    assert lines.due(115.0) == ["train: 10/800 steps (1%), 15s, ~19m45s left"]
    assert lines.on_update(update(800, at=120.0, started=100.0, finished=True)) == [
        "train: 800/800 steps (100%), done in 20s"]
    assert lines.due(200.0) == []  # a finished stage says nothing more


def test_plain_lines_follow_stages_that_run_at_once_each_at_its_own_pace():
    lines = PlainLines(every_s=5.0)
    lines.on_update(update(0, at=0.0))
    lines.on_update(update(0, 50, at=3.0, started=3.0, stage="evaluate", unit="problems"))
    assert [line.split(":")[0] for line in lines.due(5.0)] == ["train"]
    assert [line.split(":")[0] for line in lines.due(8.0)] == ["evaluate"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_plain_lines_at_a_steady_pace_while_a_stage_goes():
    out = io.StringIO()
    with terminal_progress(out, every_s=0.3):
        with track("train", "steps", 4) as tracker:
            tracker(1, loss=2.0)
            time.sleep(1.0)  # one slow step: the lines go on
            tracker(4, loss=1.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: 0/4 steps (0%), 0s"
    assert sum(line.startswith("train: 1/4 steps (25%), loss 2") for line in lines) >= 2, lines
    assert lines[-1].startswith("train: 4/4 steps (100%), loss 1, done in 1s")
    assert "\x1b[" not in out.getvalue()  # no terminal codes in a log


def test_a_terminal_gets_live_bars_and_a_summary_line_per_finished_stage():
    out = Terminal()
    with terminal_progress(out):
        for stage in ("train", "evaluate"):
            with track(stage, "steps", 5) as tracker:
                for step in range(1, 6):
                    tracker(step, loss=0.5)
                    time.sleep(0.03)
    text = out.getvalue()
    assert "\x1b[" in text and "━" in text  # drawn, not printed line by line
    assert "train: 5/5 steps (100%), loss 0.5, done in 0s" in text
    assert text.rstrip().endswith("evaluate: 5/5 steps (100%), loss 0.5, done in 0s")
