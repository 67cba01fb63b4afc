"""One prepared GPU check: training and generation throughput of FDD's own stages on the device at hand.

Runs, each section on its own (a failing section is reported, the others still run):
  1. the demo's tiny student (built from config, FDD's tokenizer) trained at the demo profile's batch, in this
     process and again through the multi-process launcher (training.processes = the visible GPUs, torchrun + DDP;
     on the CPU 2 gloo processes) at the same global batch;
  2. students of real shapes built from config with random weights (SmolLM2-135M and Qwen2.5-0.5B layouts;
     no hub here), full fine-tuning and LoRA through `train_student`;
  3. generation through the hf backend (`generate_texts`, every output --max-new-tokens long);
  4. whether a vLLM environment is at hand (FDD_VLLM_PYTHON), and if so the vllm backend on the same prompts.
Training tokens/s counts the tokens of the encoded examples (prompt + program, no padding) the optimiser saw.
Usage: python bench/bench_gpu_check.py [--device cuda] [--smoke] [--train-only] [--set KEY=VALUE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
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
from fdd_core.student.launch import train_in_processes
from fdd_core.student.train import encode_examples, train_student

SHAPES = {  # published layouts of the students users bring (config.json of each hub model)
    "smollm2-135m": ("LlamaConfig", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                         tie_word_embeddings=True)),
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                         tie_word_embeddings=True)),
}
SMOKE_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2)


def machine(device: str) -> dict:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "device": device,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
            "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}


def examples(n: int) -> list[Example]:
    seeds, _ = synthetic.make_splits(n_seed=n, n_test=0, seed=0)
    return [Example(id=p.id, question=p.question, program=p.solution or "", answer=p.answer, source=p.source)
            for p in seeds]


def train_throughput(cfg, rows: list[Example], work: Path, base: Path, launched: bool = False) -> dict:
    """launched: through torchrun (launch.train_in_processes) even with one process, as training.processes > 1
    would; the Trainer's loop time is rank 0's, wall_seconds adds the launch (workers start, load, save)."""
    train = write_jsonl(work / "train.jsonl", rows)
    tokenizer = load_tokenizer(base)
    encoded, _ = encode_examples(cfg, tokenizer, rows, False, train)
    mean_tokens = sum(len(r["input_ids"]) for r in encoded) / len(encoded)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = (train_in_processes if launched else train_student)(cfg, train, work / "out", base=base)
    wall = time.perf_counter() - started
    steps = result.counts.steps
    tokens = steps * cfg.training.batch_size * mean_tokens
    log = [json.loads(line) for line in (work / "out" / "train_log.jsonl").read_text().splitlines()]
    seconds = next(row["train_runtime"] for row in log if "train_runtime" in row)  # the Trainer's loop alone
    return {"steps": steps, "batch_size": cfg.training.batch_size, "mean_example_tokens": round(mean_tokens, 1),
            "processes": cfg.training.processes, "train_seconds": seconds, "stage_seconds": result.seconds,
            "wall_seconds": round(wall, 2), "tokens_per_s": round(tokens / seconds),
            "first_loss": result.counts.first_loss, "final_loss": result.counts.final_loss,
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)  # this process's: not the workers'
            if torch.cuda.is_available() and not launched else None}


def shaped_student(name: str, tokenizer_from: Path, out: Path, smoke: bool) -> Path:
    config_class, shape = SHAPES[name]
    shape = {**shape, **(SMOKE_SHAPE if smoke else {})}
    config = getattr(transformers, config_class)(**shape, max_position_embeddings=2048)
    tokenizer = load_tokenizer(tokenizer_from)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def generation_throughput(model: Path, questions: list[str], device: str, batch_size: int, max_new: int) -> dict:
    cfg = load_config(None, [f"inference.batch_size={batch_size}", f"inference.max_new_tokens={max_new}"]).inference
    generate_texts(model, questions[:batch_size], cfg, device=device, ignore_eos=True)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    texts = generate_texts(model, questions, cfg, device=device, ignore_eos=True)
    seconds = time.perf_counter() - started
    tokens = len(questions) * max_new
    return {"prompts": len(questions), "batch_size": batch_size, "new_tokens_each": max_new,
            "seconds": round(seconds, 2), "generated_tokens_per_s": round(tokens / seconds),
            "outputs": sum(1 for row in texts if row and row[0])}


def section(results: dict, name: str, fn, out: Path | None) -> None:
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # a failed section is a finding, the others still run
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    results[name]["section_seconds"] = round(time.perf_counter() - started, 1)
    print(name, json.dumps({k: v for k, v in results[name].items() if k != "traceback"}), flush=True)
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, measures nothing")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every training section (e.g. training.packing=false, to compare)")
    parser.add_argument("--train-only", action="store_true", help="skip generation (and vLLM)")
    args = parser.parse_args()
    smoke, device = args.smoke, args.device
    results: dict = {"machine": machine(device)}
    with tempfile.TemporaryDirectory(prefix="fdd-gpu-check-") as tmp:
        work = Path(tmp)
        rows = examples(64 if smoke else 2000)
        demo_sets = [f"training.device={device}", f"training.max_steps={2 if smoke else 300}", *args.sets]
        demo = load_config("demo", demo_sets)
        base = build_tiny_student(demo.student, [r.question for r in rows] + [r.program for r in rows], work / "base")
        section(results, "train_tiny_demo_student", lambda: train_throughput(demo, rows, work / "tiny", base),
                args.json)
        processes = torch.cuda.device_count() if device.startswith("cuda") else 2
        batch = demo.training.batch_size // processes * processes or processes  # a multiple: one global batch
        launched = load_config("demo", [*demo_sets, f"training.processes={processes}", f"training.batch_size={batch}"])
        section(results, f"train_tiny_demo_student_launched_{processes}_processes",
                lambda: train_throughput(launched, rows, work / "tiny-launched", base, launched=True), args.json)
        for shape in SHAPES:
            folder = shaped_student(shape, base, work / f"{shape}-base", smoke)
            for method, lr in (("full", "2e-5"), ("lora", "2e-4")):
                cfg = load_config(None, [f"student.model={folder}", f"training.method={method}",
                                         f"training.learning_rate={lr}", f"training.device={device}",
                                         f"training.batch_size={4 if smoke else 16}",
                                         f"training.max_steps={2 if smoke else 40}", *args.sets])
                section(results, f"train_{shape}_{method}",
                        lambda: train_throughput(cfg, rows, work / f"{shape}-{method}", folder), args.json)
            if shape == "smollm2-135m" and not args.train_only:
                _, test = synthetic.make_splits(n_seed=0, n_test=16 if smoke else 512, seed=1)
                questions = [p.question for p in test]
                for batch in (8, 64) if smoke else (64, 256):
                    section(results, f"generate_{shape}_hf_batch{batch}",
                            lambda: generation_throughput(folder, questions, device, batch, 8 if smoke else 128),
                            args.json)
        vllm = os.environ.get("FDD_VLLM_PYTHON")
        results["vllm"] = {"available": bool(vllm and Path(vllm).exists()),
                           "note": "vLLM runs in its own environment (FDD_VLLM_PYTHON); none here" if not vllm else vllm}
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "traceback"} if isinstance(v, dict) else v
                      for k, v in results.items()}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
