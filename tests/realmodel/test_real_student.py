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
