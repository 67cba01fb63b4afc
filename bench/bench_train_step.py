"""What a training step of the tiny demo student costs, padded as before against packed with the LM head on the
program tokens only (fdd_core/student/packing.py, target_loss.py), on the same random batches, in one process; the
packed step under bf16 autocast (training.precision auto on a CPU with bf16 in hardware) against fp32; and that step
with PyTorch's math attention (train.py's training_attention, what training on the CPU uses) against its default
CPU kernel (flash attention).

Data: the demo's kind of rows (seed-like 1-4 step problems, as in round 0) and a late round's (those plus as many
5-8 step problems). Each variant runs the same batches; variants alternate, so a busy machine slows both alike.
Reports ms per step, token slots per step, the ratio old / new, new / new-bf16 (where the CPU computes bf16 in
hardware; elsewhere bf16 is emulated and the figure says so) and new-bf16 / new-bf16-math.

Usage: python bench/bench_train_step.py [--steps 20] [--reps 3] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from fdd_core.config import StudentConfig
from fdd_core.student import build_tiny_student, encode_example
from fdd_core.student.factory import load_model, load_tokenizer
from fdd_core.student.packing import PackingCollator
from fdd_core.student.target_loss import target_loss_trainer
from fdd_core.student.train import cpu_computes_bf16, training_attention
from fdd_core.synthetic import make_splits, steps_of


def datasets(tokenizer) -> dict[str, list[dict]]:
    seeds, test = make_splits(1000, 1600, seed=3)
    late = [p for p in test if (steps_of(p) or 0) >= 5]
    enc = lambda ps: [encode_example(tokenizer, p.question, p.solution, seq2seq=False, max_length=384) for p in ps]
    early = enc(seeds)
    return {"round0-like": early, "late-round-like": early + enc(late)}


def main() -> None:
    import torch
    from transformers import TrainingArguments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-train-step-"))
    seeds, _ = make_splits(400, 0, seed=0)
    base = build_tiny_student(StudentConfig(), [t for p in seeds for t in (p.question, p.solution)], work / "base")
    tokenizer = load_tokenizer(base)
    model = load_model(base, seq2seq=False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trainer = target_loss_trainer()(model=model, args=TrainingArguments(output_dir=str(work / "t"), use_cpu=True,
                                                                         report_to="none"))

    def old(batch):  # padded rows, the model's own loss over every position's logits
        return model(**PackingCollator(tokenizer.pad_token_id, pack=False)(batch)).loss

    def new(batch):
        return trainer.compute_loss(model, PackingCollator(tokenizer.pad_token_id)(batch))

    def new_bf16(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return new(batch)

    def new_bf16_math(batch):
        with training_attention("cpu"):
            return new_bf16(batch)  # the backward follows the forward's choice: math attention's is plain autograd

    def run(rows, step_fn, seed):
        rng, started = random.Random(seed), time.perf_counter()
        for _ in range(a.steps):
            step_fn(rng.sample(rows, a.batch_size)).backward()
            optimizer.step()
            optimizer.zero_grad()
        return 1000 * (time.perf_counter() - started) / a.steps

    report = {"threads": a.threads, "batch_size": a.batch_size, "steps": a.steps, "cpu_computes_bf16": cpu_computes_bf16(),
              "data": {}}
    for name, rows in datasets(tokenizer).items():
        run(rows, new, 99)  # warm up
        times = {"old": [], "new": [], "new_bf16": [], "new_bf16_math": []}
        for rep in range(a.reps):
            for label, fn in (("old", old), ("new", new), ("new_bf16", new_bf16), ("new_bf16_math", new_bf16_math)):
                times[label].append(run(rows, fn, rep))
        packer = PackingCollator(tokenizer.pad_token_id)
        padder = PackingCollator(tokenizer.pad_token_id, pack=False)
        rng = random.Random(0)
        for _ in range(50):
            batch = rng.sample(rows, a.batch_size)
            packer(batch), padder(batch)
        row = {"ms_step_old": round(statistics.median(times["old"]), 1),
               "ms_step_new": round(statistics.median(times["new"]), 1),
               "ms_step_new_bf16": round(statistics.median(times["new_bf16"]), 1),
               "ms_step_new_bf16_math": round(statistics.median(times["new_bf16_math"]), 1),
               "padding_old": padder.padding_share(), "padding_new": packer.padding_share(),
               "labelled_share": round(statistics.mean(sum(x != -100 for x in r["labels"]) / len(r["labels"])
                                                       for r in rows), 3)}
        row["speedup"] = round(row["ms_step_old"] / row["ms_step_new"], 2)
        row["bf16_speedup"] = round(row["ms_step_new"] / row["ms_step_new_bf16"], 2)
        row["math_attention_speedup"] = round(row["ms_step_new_bf16"] / row["ms_step_new_bf16_math"], 2)
        report["data"][name] = row
        print(name, json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
