"""Can the tiny from-config student learn the synthetic domain on a CPU? Train on seed solutions, then score
greedy programs on held-out seed-difficulty problems and on the test set by number of steps.

Done when: >= 90% on held-out seed-difficulty problems after <= 5 minutes of training on 2 cores, and clearly
less on the longest (7-8 step) test problems.

Usage: python bench/bench_student_learning.py [--n-train 2000] [--max-steps 1500] [--json OUT] [--infer] ...

Measured on this machine (2 cores, idle; hidden 128, 2 layers, 0.65M parameters, bpe tokenizer, batch 32,
2,000 seeds, 400 held-out seed problems, 50 test problems per step count), training seconds / held-out:
  lr 1e-3: 800 steps 93 s / 81.3%; 1,200 steps 145 s / 92.3%; 1,500 steps (default) 168 s / 94.3%, 7-8 steps 0%
  lr 1.5e-3, 800 steps: 87 s / 79.8%; lr 7e-4, 800 steps: 89 s / 81.5%
  lr 3e-3 (the old default): 800 steps 97 s / 33%; 2,000 steps 240 s / 92.8%; lr 6e-3 and 1e-2 fail to learn
  hidden 256, lr 1e-3, 800 steps: 211 s / 91%; batch 16, 1,600 steps: 88 s / 23.8% (lr 3e-3)
Two torch threads beat one (0.098 against 0.18 s a step) only on an idle machine: next to another busy process
they fall to 2.4 s a step, so measure alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from fdd_core.answers import answers_match
from fdd_core.config import FDDConfig
from fdd_core.sandbox import run_programs
from fdd_core.records import Example
from fdd_core.results import TrainCounts
from fdd_core.store import write_jsonl
from fdd_core.student import build_prompt, build_tiny_student, load_student, program_from_generation, train_student
from fdd_core.student.factory import TOKENIZER_KINDS
from fdd_core.synthetic import make_splits, steps_of


def greedy_programs(model_dir: Path, questions: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Batched greedy decoding with left padding (longest prompts first, so batches pad little)."""
    import torch

    student = load_student(model_dir, device="cpu")
    tok, model = student.tokenizer, student.model
    tok.padding_side = "left"
    order = sorted(range(len(questions)), key=lambda i: -len(questions[i]))
    out = [""] * len(questions)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tok([build_prompt(tok, questions[i]) for i in idx], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            new = gen if student.seq2seq else gen[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True)):
                out[i] = program_from_generation(text)
    return out


def train_tiny(a: argparse.Namespace, cfg: FDDConfig, work: Path, problems: list) -> tuple[dict, float, float]:
    """Build the tiny student and train it on problems: (counts, training seconds, stage seconds)."""
    examples = [Example(id=p.id, question=p.question, program=p.solution, answer=p.answer, source=p.source)
                for p in problems]
    write_jsonl(work / "train.jsonl", examples)
    base = build_tiny_student(cfg.student, [t for e in examples for t in (e.question, e.program)], work / "base",
                              seed=a.seed, tokenizer_kind=a.tokenizer, vocab_size=a.vocab_size)
    ticks: dict[str, float] = {}

    def progress(step: int, total: int) -> None:  # training time proper: first to last optimiser step
        ticks.setdefault("start", time.perf_counter())
        ticks["end"] = time.perf_counter()

    result = train_student(cfg, work / "train.jsonl", work / "round0", base=base, progress=progress)
    train_s = ticks["end"] - ticks["start"]
    config = work / "round0" / "training_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "train_seconds": train_s}, indent=2))
    return result.counts, train_s, result.seconds


def score(programs: list[str], problems: list) -> list[bool]:
    results = run_programs(programs)
    return [r.ok and answers_match(r.answer, p.answer) for r, p in zip(results, problems)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-heldout", type=int, default=400, help="held-out problems of seed difficulty")
    ap.add_argument("--n-test", type=int, default=400, help="test problems, split evenly over 1..8 steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--architecture", default="causal", choices=["causal", "seq2seq"])
    ap.add_argument("--tokenizer", default="bpe", choices=list(TOKENIZER_KINDS))
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--max-steps", type=int, default=1500, help="0: TrainingConfig's epochs")
    ap.add_argument("--epochs", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=float, help="default: TrainingConfig's")
    ap.add_argument("--scheduler", help="default: TrainingConfig's lr_scheduler")
    ap.add_argument("--weight-decay", type=float, help="default: TrainingConfig's")
    ap.add_argument("--group-by-length", action="store_true", default=None)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--infer", action="store_true", help="decode with fdd_core.student.infer.generate_programs")
    ap.add_argument("--workdir", type=Path, help="keep the model here (default: a temporary folder)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the model trained before in --workdir")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()

    cfg = FDDConfig()
    cfg.run.seed = a.seed
    cfg.student.architecture = a.architecture
    for field, value in (("hidden_size", a.hidden), ("num_layers", a.layers), ("num_heads", a.heads)):
        if value is not None:
            setattr(cfg.student, field, value)
    for field, value in (("max_steps", a.max_steps or None), ("epochs", a.epochs), ("batch_size", a.batch_size),
                         ("learning_rate", a.lr), ("warmup", a.warmup), ("lr_scheduler", a.scheduler),
                         ("weight_decay", a.weight_decay), ("group_by_length", a.group_by_length)):
        if value is not None:
            setattr(cfg.training, field, value)
    cfg.training.device = "cpu"

    seeds, test = make_splits(a.n_train + a.n_heldout, a.n_test, a.seed)
    train, heldout = seeds[:a.n_train], seeds[a.n_train:]  # same step distribution, no shared question
    work = a.workdir or Path(tempfile.mkdtemp(prefix="fdd-bench-student-"))
    if a.eval_only:  # a model this script trained before, into --workdir
        saved = json.loads((work / "round0" / "training_config.json").read_text())
        counts, train_s, stage_s = TrainCounts(**saved["counts"]), saved["train_seconds"], saved["seconds"]
    else:
        counts, train_s, stage_s = train_tiny(a, cfg, work, train)
    marker = json.loads((work / "base" / "fdd_student.json").read_text())
    model_dir = work / "round0" / "model"
    print(f"trained {counts.steps} steps on {counts.examples} examples in {train_s:.1f} s "
          f"(stage {stage_s:.1f} s); loss {counts.first_loss:.3f} -> {counts.final_loss:.3f}")

    problems = heldout + test
    start = time.perf_counter()
    questions = [p.question for p in problems]
    if a.infer:
        from fdd_core.config import InferenceConfig
        from fdd_core.student.infer import generate_programs

        icfg = InferenceConfig(batch_size=a.gen_batch, max_new_tokens=a.max_new_tokens)
        programs = [row[0] for row in generate_programs(model_dir, questions, icfg, device="cpu")]
    else:
        programs = greedy_programs(model_dir, questions, a.gen_batch, a.max_new_tokens)
    decode_s = time.perf_counter() - start
    correct = score(programs, problems)
    held = correct[:len(heldout)]
    by_steps: dict[int, list[bool]] = defaultdict(list)
    for p, ok in zip(test, correct[len(heldout):]):
        by_steps[steps_of(p)].append(ok)
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "student": cfg.student.model_dump(), "training": cfg.training.model_dump(),
        "tokenizer": a.tokenizer, "vocab_size": marker["vocab_size"], "parameters": marker["parameters"],
        "train_examples": counts.examples, "steps": counts.steps,
        "train_seconds": round(train_s, 1), "stage_seconds": round(stage_s, 1),
        "first_loss": counts.first_loss, "final_loss": counts.final_loss,
        "decode_seconds": round(decode_s, 1),
        "heldout_seed_accuracy": round(sum(held) / len(held), 4),
        "test_accuracy_by_steps": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_steps.items())},
        "test_accuracy_7_8": round(sum(by_steps[7] + by_steps[8]) / max(1, len(by_steps[7] + by_steps[8])), 4),
    }
    print(f"held-out seed difficulty ({len(held)}): {figures['heldout_seed_accuracy']:.1%}")
    for k, v in figures["test_accuracy_by_steps"].items():
        print(f"  test {k} steps ({len(by_steps[k])}): {v:.1%}")
    print(f"  test 7-8 steps: {figures['test_accuracy_7_8']:.1%}   (decoding {decode_s:.0f} s)")
    wrong = [(p, prog) for p, prog, ok in zip(heldout, programs, held) if not ok][:2]
    for p, prog in wrong:
        print(f"--- wrong ({p.id}):\n{p.question}\n{prog}\n(gold {p.answer})")
    print(json.dumps(figures))
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
