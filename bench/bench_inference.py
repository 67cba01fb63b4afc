"""Problems per second of student generation: the batched hf backend against one problem at a time.

Same tiny student (built from config and trained briefly, so it writes real programs and stops at EOS at
realistic lengths), same synthetic questions, same greedy decoding, in one run.
Usage: python bench/bench_inference.py [--problems 256] [--batch-size 64] [--train-steps 200] [--ignore-eos]
       [--max-new-tokens 128] [--threads N] [--device cpu] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # bench/ is on sys.path: scripts run as python bench/NAME.py

import torch
import transformers

from fdd_core import synthetic
from fdd_core.config_files import load_config
from fdd_core.records import Example
from fdd_core.store import write_jsonl
from fdd_core.student.factory import build_tiny_student, load_tokenizer
from fdd_core.student.infer import generate_texts
from fdd_core.student.train import train_student


def machine(device: str) -> dict:
    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "device": device,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
            "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}


def build_student(work: Path, train_steps: int, device: str) -> Path:
    seeds, _ = synthetic.make_splits(n_seed=400, n_test=0, seed=0)
    cfg = load_config(None, [f"training.max_steps={max(train_steps, 1)}", f"training.device={device}"])
    base = build_tiny_student(cfg.student, [p.question for p in seeds] + [p.solution or "" for p in seeds],
                              work / "base")
    if train_steps == 0:
        return base
    examples = [Example(id=p.id, question=p.question, program=p.solution or "", answer=p.answer, source=p.source)
                for p in seeds]
    return Path(train_student(cfg, write_jsonl(work / "train.jsonl", examples), work / "train", base=base)
                .outputs["model"])


def timed(model: Path, questions: list[str], cfg, device: str, ignore_eos: bool) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = generate_texts(model, questions, cfg, device=device, ignore_eos=ignore_eos)
    return time.perf_counter() - started, [row[0] for row in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=200, help="0: a random model (use with --ignore-eos)")
    parser.add_argument("--ignore-eos", action="store_true", help="every output exactly --max-new-tokens long")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="fdd-bench-") as tmp:
        started = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the tiny model trains fastest on one thread, above all on a busy machine
        model = build_student(Path(tmp), args.train_steps, args.device)
        torch.set_num_threads(threads)
        build_s = time.perf_counter() - started
        _, test = synthetic.make_splits(n_seed=0, n_test=args.problems, seed=1)
        questions = [p.question for p in test]
        cfg = load_config(None, [f"inference.batch_size={args.batch_size}",
                                 f"inference.max_new_tokens={args.max_new_tokens}"]).inference
        timed(model, questions[:4], cfg, args.device, args.ignore_eos)  # warm-up: imports, allocator, kernels
        batched_s, batched = timed(model, questions, cfg, args.device, args.ignore_eos)
        single_s, single = timed(model, questions, cfg.model_copy(update={"batch_size": 1}), args.device,
                                 args.ignore_eos)
        tokenizer = load_tokenizer(model)
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in batched]
        reference = [len(tokenizer(p.solution or "", add_special_tokens=False)["input_ids"]) for p in test]

    result = {
        "machine": machine(args.device),
        "problems": len(questions),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "train_steps": args.train_steps,
        "ignore_eos": args.ignore_eos,
        "build_and_train_seconds": round(build_s, 1),
        "mean_generated_tokens": round(sum(lengths) / len(lengths), 1),
        "mean_reference_program_tokens": round(sum(reference) / len(reference), 1),
        "identical_outputs": sum(a == b for a, b in zip(batched, single)),
        "batched": {"seconds": round(batched_s, 2), "problems_per_s": round(len(questions) / batched_s, 1)},
        "one_at_a_time": {"seconds": round(single_s, 2), "problems_per_s": round(len(questions) / single_s, 1)},
        "speedup": round(single_s / batched_s, 1),
    }
    print(json.dumps(result, indent=2))
    print(f"\nbatched (batch {args.batch_size}): {result['batched']['problems_per_s']} problems/s; one at a time: "
          f"{result['one_at_a_time']['problems_per_s']} problems/s; speedup {result['speedup']}x "
          f"({result['identical_outputs']}/{len(questions)} outputs identical)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
