"""SmolLM2-135M-Instruct as FDD's student, through FDD's own stages: converted from GGUF, fine-tuned (full and LoRA),
prompted with its chat template, stopping at its EOS with a program the sandbox runs, saved as a checkpoint that
plain transformers loads. `fdd run` takes its GGUF file as student.model and `fdd eval` reads its folder without
writing a byte into it."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fdd_core.config_files import load_config
from fdd_core.store import write_jsonl

from .conftest import MAX_LENGTH

pytestmark = pytest.mark.slow
FDD = shutil.which("fdd", path=str(Path(sys.executable).parent)) or "fdd"


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_converted_checkpoint_is_a_plain_transformers_model(smollm2, smollm2_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert model.config.model_type == "llama" and 130e6 < model.num_parameters() < 140e6
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    # converting the same file again keeps the folder as it is (a sha256 of the GGUF file marks it)
    before = tree(smollm2)
    r = subprocess.run([FDD, "student", "convert", str(smollm2_gguf), str(smollm2)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("converted"), r.stderr
    assert tree(smollm2) == before


def test_full_fine_tuning_through_the_train_stage(tmp_path, smollm2, gsm8k_train_examples):
    """A few full fine-tuning steps on the offline teacher's GSM8K programs teach the format: the student, prompted
    through its chat template, writes a bare program and stops at its EOS; the saved model loads in transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fdd_core.sandbox import Sandbox
    from fdd_core.student.infer import generate_texts
    from fdd_core.student.prompting import build_prompt, program_from_generation
    from fdd_core.student.train import train_student

    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_train_examples[:16])
    cfg = load_config(None, [f"student.model={smollm2}", f"student.max_length={MAX_LENGTH}", "training.method=full",
                             "training.max_steps=8", "training.batch_size=4", "training.learning_rate=1e-4",
                             "training.warmup=0", "training.lr_scheduler=constant", "training.logging_steps=1",
                             "training.device=cpu", "inference.max_new_tokens=80", "inference.batch_size=4"])
    result = train_student(cfg, train, tmp_path / "student", base=smollm2)
    assert result.counts.steps == 8 and result.counts.too_long == 0
    assert result.counts.final_loss < result.counts.first_loss
    model_dir = Path(result.outputs["model"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # plain transformers, nothing of FDD's
    AutoModelForCausalLM.from_pretrained(model_dir)
    questions = [e.question for e in gsm8k_train_examples[:4]]
    prompt = build_prompt(tokenizer, questions[0])
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")  # its chat template
    texts = [row[0] for row in generate_texts(model_dir, questions, cfg.inference, device="cpu")]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    stopped = [n < cfg.inference.max_new_tokens for n in lengths]
    assert sum(stopped) >= 3, list(zip(lengths, texts))  # stopped at EOS, well before the token cap
    programs = [program_from_generation(t) for t in texts]
    with Sandbox(workers=2, timeout_s=2) as box:
        ran = box.run(programs)
    assert sum(r.ok for r in ran) >= 3, list(zip(programs, [r.error for r in ran]))


def test_fdd_run_with_a_gguf_student_and_lora_then_fdd_eval(tmp_path, smollm2_gguf, data_dir):
    """`fdd run --config pretrained` with the GGUF file as student.model: converted once into the run's base, LoRA
    through FDD's own stages, the base evaluated first (the report's baseline row); the round's model loads in plain
    transformers. `fdd eval` on that hub-format folder then leaves it byte-identical (the train stage's manifest
    still holds) and writes beside the run instead."""
    from transformers import AutoModelForCausalLM

    from fdd_core.store import verify_manifest

    runs = tmp_path / "runs"
    sets = [f"run.runs_dir={runs}", "run.name=smol", "run.rounds=0", f"student.model={smollm2_gguf}",
            f"student.max_length={MAX_LENGTH}", "data.n_seed=8", "data.eval_limit=2", f"data.data_dir={data_dir}",
            "data.source=local", "teacher.k_solutions=1", f"teacher.cache_path={tmp_path / 'teacher.sqlite'}",
            "training.max_steps=2", "training.batch_size=4", "training.device=cpu", "inference.max_new_tokens=24",
            "inference.batch_size=2", "sandbox.workers=2"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    r = subprocess.run([FDD, "run", "--config", "pretrained", *[a for s in sets for a in ("--set", s)]],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "warning: student.model=" not in r.stderr  # the profile's settings suit a pretrained student
    run_dir = runs / "smol"
    assert json.loads((run_dir / "base" / "fdd_gguf.json").read_text())["gguf"] == smollm2_gguf.name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["baseline"]["model"] == str(run_dir / "base") and set(report["baseline"]["accuracy"]) == {"gsm8k"}
    assert [row["round"] for row in report["rounds"]] == [0]
    student = run_dir / "rounds" / "r0" / "student"
    config = json.loads((student / "training_config.json").read_text())
    assert config["counts"]["steps"] == 2 and config["fdd_config"]["training"]["method"] == "lora"
    assert (student / "adapter" / "adapter_config.json").is_file()
    AutoModelForCausalLM.from_pretrained(student / "model")  # LoRA merged: plain transformers weights
    rows = [json.loads(line) for line in (run_dir / "rounds" / "r0" / "eval" / "eval-gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 2

    before = tree(student / "model")
    r = subprocess.run([FDD, "eval", "--student", str(student / "model"), "--benchmark", "gsm8k", "--limit", "1",
                        "--set", f"run.runs_dir={runs}", "--set", f"data.data_dir={data_dir}",
                        "--set", "data.source=local", "--set", "inference.max_new_tokens=16"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert tree(student / "model") == before and verify_manifest(student) is not None
    assert json.loads((runs / "eval" / "smol-r0" / "eval.json").read_text())["benchmarks"]["gsm8k"]["rows"] == 1
