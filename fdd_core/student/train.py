"""The training stage: supervised fine-tuning of the student on question -> program, with the Trainer.

Each round restarts from the base checkpoint (the paper's choice) unless continue_from_previous is set;
the loss is on the program only, and the final model is written atomically into out_dir/"model".
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import FDDConfig
from ..records import Example, StageResult
from ..store import atomic_write_text, read_jsonl
from .factory import is_seq2seq, load_model, load_tokenizer, quiet_transformers, resolve_device, save_dir_atomically
from .prompting import IGNORE_INDEX, encode_example

log = logging.getLogger(__name__)
CAUSAL_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # Llama, Qwen2, SmolLM (Llama), Mistral
SEQ2SEQ_LORA_TARGETS = ("q", "v")  # T5, FLAN-T5, CodeT5(+)


def start_checkpoint(cfg: FDDConfig, base: Path | str, previous: Path | None) -> Path | str:
    """Where this round's training starts: the base, or the previous round's model when asked to continue.
    previous may be the previous train stage's out_dir (holding model/) or the model folder itself."""
    if not (cfg.training.continue_from_previous and previous is not None):
        return base
    previous = Path(previous)
    model = previous / "model" if (previous / "model" / "config.json").exists() else previous
    if not (model / "config.json").exists():
        raise FileNotFoundError(f"continue_from_previous: no model found at {previous}")
    return model


def lora_targets(model: Any, seq2seq: bool) -> list[str] | None:
    """Attention projections present in the model, or None to let peft use its per-architecture defaults."""
    wanted = SEQ2SEQ_LORA_TARGETS if seq2seq else CAUSAL_LORA_TARGETS
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    found = [t for t in wanted if t in names]
    return found or None


def _dataset(cfg: FDDConfig, tokenizer: Any, examples: list[Example], seq2seq: bool) -> tuple[list[dict], int]:
    rows, too_long = [], 0
    for ex in examples:
        row = encode_example(tokenizer, ex.question, ex.program, seq2seq=seq2seq, max_length=cfg.student.max_length)
        if row is None:
            too_long += 1
        else:
            rows.append(row)
    return rows, too_long


def _progress_callback(progress: Callable[[int, int], None] | None, log: list[dict]) -> Any:
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if progress is not None:
                progress(0, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress(state.global_step, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                log.append({"step": state.global_step, **logs})

    return Report()


def train_student(
    cfg: FDDConfig,
    train_path: Path,
    out_dir: Path,
    *,
    base: Path | str,
    previous: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    warmup: float = 0.05,
    weight_decay: float = 0.0,
    lr_scheduler: str = "cosine",
    gradient_accumulation_steps: int = 1,
    lora_dropout: float = 0.05,
    logging_steps: int = 10,
    group_by_length: bool = False,
) -> StageResult:
    """Fine-tune on train_path (JSONL of Example) and save out_dir/model (merged for LoRA, plus out_dir/adapter),
    its tokenizer, out_dir/train_log.jsonl and out_dir/training_config.json (written last).

    Knobs not (yet) in TrainingConfig: warmup (< 1: a share of the steps), weight_decay, lr_scheduler,
    gradient_accumulation_steps, lora_dropout, logging_steps, group_by_length (batches of similar length: less
    padding, but on the tiny student at lr 3e-3 it cut held-out accuracy from ~94% to 20%; bench_student_learning.py).
    """
    import torch
    import transformers
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # training_config.json is written last: it marks a finished stage, so a re-run first removes the old one
    (out_dir / "training_config.json").unlink(missing_ok=True)
    tc = cfg.training
    examples = [Example.model_validate(row) for row in read_jsonl(train_path)]
    if not examples:
        raise ValueError(f"{train_path}: no training examples")
    start = start_checkpoint(cfg, base, previous)
    # A checkpoint knows what it is; cfg.student.architecture only decides what from_config builds.
    seq2seq = is_seq2seq(start)
    if seq2seq != (cfg.student.architecture == "seq2seq"):
        log.warning("%s is %s; student.architecture says %s: using the checkpoint's", start,
                    "seq2seq" if seq2seq else "causal", cfg.student.architecture)
    tokenizer = load_tokenizer(start)
    rows, too_long = _dataset(cfg, tokenizer, examples, seq2seq)
    if not rows:
        raise ValueError(f"{train_path}: every example is longer than student.max_length={cfg.student.max_length}")

    device = resolve_device(tc.device)
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    use_fp16 = device == "cuda" and not use_bf16
    set_seed(cfg.run.seed)  # before loading: LoRA's initialisation draws from it
    with quiet_transformers():
        model = load_model(start, seq2seq=seq2seq)  # float32 master weights; bf16/fp16 autocast on CUDA
    if tc.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=lora_dropout,
            target_modules=lora_targets(model, seq2seq),
            task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
        )
        model = get_peft_model(model, lora)

    batches_per_epoch = math.ceil(len(rows) / (tc.batch_size * gradient_accumulation_steps))
    total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * batches_per_epoch))
    log: list[dict] = []
    # The Trainer wants an output_dir; with save_strategy="no" it stays empty and is removed at the end.
    scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=".trainer-"))
    try:
        args = TrainingArguments(
            output_dir=str(scratch),
            per_device_train_batch_size=tc.batch_size,
            gradient_accumulation_steps=gradient_accumulation_steps,
            num_train_epochs=tc.epochs,
            max_steps=total_steps,
            learning_rate=tc.learning_rate,
            lr_scheduler_type=lr_scheduler,
            warmup_steps=warmup,
            weight_decay=weight_decay,
            logging_strategy="steps",
            logging_steps=logging_steps,
            logging_first_step=True,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            log_level="error",
            seed=cfg.run.seed,
            data_seed=cfg.run.seed,
            use_cpu=device == "cpu",
            bf16=use_bf16,
            fp16=use_fp16,
            dataloader_num_workers=0,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
            remove_unused_columns=False,
        )
        collator = DataCollatorForSeq2Seq(
            tokenizer, model=model if seq2seq else None, label_pad_token_id=IGNORE_INDEX, padding=True
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=rows, data_collator=collator, processing_class=tokenizer,
            callbacks=[_progress_callback(progress, log)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
        with quiet_transformers():
            output = trainer.train()
            outputs = _save(trainer.model, tokenizer, out_dir, lora=tc.method == "lora", start=start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses = [row["loss"] for row in log if "loss" in row]
    counts = {
        "examples": len(rows),
        "too_long": too_long,
        "steps": output.global_step,
        "train_loss": round(float(output.training_loss), 6),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
    }
    seconds = time.perf_counter() - started
    atomic_write_text(out_dir / "train_log.jsonl", "".join(json.dumps(row) + "\n" for row in log))
    resolved = {
        "fdd_config": cfg.model_dump(mode="json"),
        "base": str(base),
        "start": str(start),
        "train_path": str(train_path),
        "seq2seq": seq2seq,
        "device": device,
        "precision": "bf16" if use_bf16 else "fp16" if use_fp16 else "fp32",
        "total_steps": total_steps,
        "knobs": {"warmup": warmup, "weight_decay": weight_decay, "lr_scheduler": lr_scheduler,
                  "gradient_accumulation_steps": gradient_accumulation_steps, "lora_dropout": lora_dropout,
                  "group_by_length": group_by_length},
        "counts": counts,
        "seconds": round(seconds, 3),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    outputs["log"] = str(out_dir / "train_log.jsonl")
    outputs["config"] = str(atomic_write_text(out_dir / "training_config.json", json.dumps(resolved, indent=2) + "\n"))
    return StageResult(stage="train", outputs=outputs, counts=counts, seconds=round(seconds, 3))


def _save(model: Any, tokenizer: Any, out_dir: Path, *, lora: bool, start: Path | str) -> dict[str, str]:
    """model/ always holds plain transformers weights (LoRA merged into the start checkpoint); adapter/ the
    LoRA adapter alone (vLLM serves it with a LoRARequest over the start checkpoint it names)."""
    outputs: dict[str, str] = {}
    if lora:
        start_ref = str(Path(start).resolve()) if Path(start).exists() else str(start)
        model.peft_config["default"].base_model_name_or_path = start_ref

        def write_adapter(tmp: Path) -> None:
            model.save_pretrained(tmp)  # before merging: merge_and_unload folds the adapter away
            tokenizer.save_pretrained(tmp)

        outputs["adapter"] = str(save_dir_atomically(out_dir / "adapter", write_adapter))
        model = model.merge_and_unload()
    else:
        shutil.rmtree(out_dir / "adapter", ignore_errors=True)  # a stale adapter from an earlier LoRA run

    def write_model(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    outputs["model"] = str(save_dir_atomically(out_dir / "model", write_model))
    return outputs
