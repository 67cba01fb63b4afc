"""The tiny from-config student really learns the synthetic domain on the CPU (the suite's small version of
bench/bench_student_learning.py): trained on seed solutions through the product's stages, it answers most
held-out problems of seed difficulty and far fewer of the longest ones, which no seed resembles."""

import pytest

from fdd_core.config import FDDConfig
from fdd_core.evaluate import evaluate_student
from fdd_core.records import Example
from fdd_core.store import write_jsonl
from fdd_core.student import base_checkpoint, train_student
from fdd_core.synthetic import make_splits

@pytest.mark.slow
def test_tiny_student_learns_held_out_problems_and_not_the_longest(tmp_path):
    seeds, _ = make_splits(2100, 0, seed=3)  # 1 to 4 steps, as the seeds of a run
    train, held_out = seeds[:2000], seeds[2000:]
    _, longest = make_splits(0, 40, seed=4, test_steps=(7, 8))
    examples = [Example(id=p.id, question=p.question, program=p.solution, answer=p.answer, source=p.source)
                for p in train]
    cfg = FDDConfig()  # the embedded default student and learning rate; only the step count is set here
    cfg.training.device, cfg.training.max_steps = "cpu", 800
    base = base_checkpoint(cfg, tmp_path, [t for e in examples for t in (e.question, e.program)])
    trained = train_student(cfg, write_jsonl(tmp_path / "train.jsonl", examples), tmp_path / "r0", base=base)

    result = evaluate_student(cfg, trained.outputs["model"], {"held-out": held_out, "longest": longest},
                              tmp_path / "eval")
    accuracy = result.counts.accuracy
    assert accuracy["held-out"] >= 0.7, accuracy
    assert accuracy["longest"] <= accuracy["held-out"] - 0.5, accuracy
