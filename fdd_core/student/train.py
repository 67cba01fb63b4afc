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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import FDDConfig, TrainingConfig, precision_error
from ..config_files import ConfigError
from ..progress import Tracker, track
from ..records import Example
from ..results import TrainCounts, TrainResult
from ..store import atomic_write_text, finish_stage, read_jsonl
from .checkpoint import check_model, write_model_manifest
from .factory import is_seq2seq, load_model, load_tokenizer, quiet_transformers, resolve_device, save_dir_atomically
from .launch import launched_worker, per_process_batch, train_in_processes
from .packing import PackingCollator, packs_exactly
from .prompting import IGNORE_INDEX, encode_example
from .target_loss import target_loss_trainer

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


def load_examples(train_path: Path) -> list[Example]:
    examples = [Example.model_validate(row) for row in read_jsonl(train_path)]
    if not examples:
        raise ValueError(f"{train_path}: no training examples")
    return examples


def checkpoint_is_seq2seq(cfg: FDDConfig, start: Path | str) -> bool:
    """A checkpoint knows what it is; cfg.student.architecture only decides what from_config builds."""
    seq2seq = is_seq2seq(start)
    if seq2seq != (cfg.student.architecture == "seq2seq"):
        log.warning("%s is %s; student.architecture says %s: using the checkpoint's", start,
                    "seq2seq" if seq2seq else "causal", cfg.student.architecture)
    return seq2seq


def encode_examples(cfg: FDDConfig, tokenizer: Any, examples: list[Example], seq2seq: bool,
                    train_path: Path) -> tuple[list[dict], int]:
    """Tokenised rows (loss on the program only) and how many examples were too long to keep."""
    rows, too_long = [], 0
    for ex in examples:
        row = encode_example(tokenizer, ex.question, ex.program, seq2seq=seq2seq, max_length=cfg.student.max_length)
        if row is None:
            too_long += 1
        else:
            rows.append(row)
    if not rows:
        raise ValueError(f"{train_path}: every example is longer than student.max_length={cfg.student.max_length}")
    return rows, too_long


def cpu_computes_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX), where bf16 autocast is faster than
    fp32; elsewhere it is emulated and slower. torch's own probes (private, so a missing one means no)."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # a probe that fails says nothing: try the next
            continue
    return False


def precision_for(device: str, tc: TrainingConfig) -> str:
    """training.precision on this device: autocast over float32 master weights. auto: bf16 on CUDA (fp16 without
    bf16 support) and on a CPU with bf16 in hardware, fp32 on other CPUs."""
    import torch

    if (mismatch := precision_error(tc)) is not None:  # config_files refuses it first for configs read from files
        raise ConfigError(mismatch)
    if tc.precision != "auto":
        return tc.precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device == "cpu" and cpu_computes_bf16() else "fp32"


def build_model(cfg: FDDConfig, start: Path | str, seq2seq: bool) -> Any:
    """The start checkpoint in float32, with LoRA adapters when training.method is lora."""
    from transformers import set_seed

    set_seed(cfg.run.seed)  # before loading: LoRA's initialisation draws from it
    with quiet_transformers():
        model = load_model(start, seq2seq=seq2seq)
    if cfg.training.method != "lora":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    tc = cfg.training
    lora = LoraConfig(
        r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
        target_modules=lora_targets(model, seq2seq),
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    return get_peft_model(model, lora)


def total_steps(tc: TrainingConfig, n_rows: int) -> int:
    """training.max_steps, else training.epochs over the rows in optimiser steps (at least one)."""
    batches_per_epoch = math.ceil(n_rows / (tc.batch_size * tc.gradient_accumulation_steps))
    return tc.max_steps or max(1, math.ceil(tc.epochs * batches_per_epoch))


def training_arguments(cfg: FDDConfig, output_dir: Path, steps: int, *, device: str, precision: str) -> Any:
    """TrainingArguments from cfg.training: no checkpoints, no reports, logs through our callback only."""
    from transformers import TrainingArguments

    tc = cfg.training
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_process_batch(cfg),  # batch_size with one process
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        num_train_epochs=tc.epochs,
        max_steps=steps,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup,  # transformers reads < 1 as a share of the steps too
        weight_decay=tc.weight_decay,
        logging_strategy="steps",
        logging_steps=tc.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        seed=cfg.run.seed,
        data_seed=cfg.run.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if tc.group_by_length else "random",
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # several processes: every parameter takes part in each step
    )


@contextmanager
def training_attention(device: str, model: str = "from_config") -> Iterator[None]:
    """PyTorch's math attention (SDPA) while the tiny from_config student trains on the CPU: its backward is plain
    autograd, about 3x faster than the CPU flash kernel's at that student's shapes (head dim 32, rows of ~170 tokens
    under a packing mask), where that kernel's backward took 38% of a step (bench/bench_train_step.py). A pretrained
    student (`model` names it) and other devices keep their kernels: math attention keeps every layer's attention
    weights for the backward (batch x heads x length^2), unmeasured at their sizes. The setting is process-wide while
    it lasts (torch keeps it so)."""
    if device != "cpu" or model != "from_config":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


@contextmanager
def _scratch_dir(out_dir: Path) -> Iterator[Path]:
    """The Trainer wants an output_dir; with save_strategy="no" it stays empty and is removed at the end."""
    scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=".trainer-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def packs_on(packing: bool | None, device: str) -> bool:
    """training.packing, or when unset: packed rows on the CPU (1.3-1.7x faster steps), padded batches on CUDA, where
    the block-causal attention of packed rows was slower (H200: tiny student 21k vs 66k tokens/s, SmolLM2-135M
    full 3.6k vs 5.1k; Qwen2.5-0.5B full 5.7k vs 6.2k; docs/RESULTS.md section 4)."""
    return packing if packing is not None else str(device).startswith("cpu")


def build_trainer(model: Any, tokenizer: Any, rows: list[dict], args: Any, *, seq2seq: bool, packing: bool,
                  progress: Callable[[int, int], None] | None, train_log: list[dict]) -> Any:
    from transformers import DataCollatorForSeq2Seq, Trainer
    from transformers.trainer_callback import PrinterCallback

    collator: Any = DataCollatorForSeq2Seq(
        tokenizer, model=model if seq2seq else None, label_pad_token_id=IGNORE_INDEX, padding=True
    )
    if not seq2seq:
        pack = packing and packs_exactly(model, rows)
        if packing and not pack:
            log.warning("%s does not read packed sequences exactly: training on padded batches",
                        type(model).__name__)
        collator = PackingCollator(tokenizer.pad_token_id, pack=pack)
    trainer_class = Trainer if seq2seq or model.get_output_embeddings() is None else target_loss_trainer()
    trainer = trainer_class(
        model=model, args=args, train_dataset=rows, data_collator=collator, processing_class=tokenizer,
        callbacks=[_progress_callback(progress, train_log)],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
    return trainer


def _with_loss(tracker: Tracker, progress: Callable[[int, int], None] | None,
               train_log: list[dict]) -> Callable[[int, int], None]:
    """Each step to the stage's tracker, with the last logged loss, and to the caller's progress callback."""
    def report(step: int, total: int) -> None:
        tracker(step, total, loss=next((row["loss"] for row in reversed(train_log) if "loss" in row), None))
        if progress is not None:
            progress(step, total)

    return report


def _progress_callback(progress: Callable[[int, int], None] | None, train_log: list[dict]) -> Any:
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
                train_log.append({"step": state.global_step, **logs})

    return Report()


def train_student(
    cfg: FDDConfig,
    train_path: Path,
    out_dir: Path,
    *,
    base: Path | str,
    previous: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult | None:
    """Fine-tune on train_path (JSONL of Example) and save out_dir/model (merged for LoRA, plus out_dir/adapter),
    its tokenizer, out_dir/train_log.jsonl and out_dir/training_config.json (written last).
    Every hyperparameter comes from cfg.training; training.processes > 1 trains under torchrun (launch.py), and
    there the workers but rank 0 return None."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # training_config.json is written last: it marks a finished stage, so a re-run first removes the old one
    (out_dir / "training_config.json").unlink(missing_ok=True)
    examples = load_examples(train_path)
    start = start_checkpoint(cfg, base, previous)
    check_model(start, hint=": rerun the same `fdd run` (a damaged base is rebuilt, a damaged round redone)")
    if cfg.training.processes > 1 and not launched_worker():  # the workers run this function again, under torchrun
        return train_in_processes(cfg, train_path, out_dir, base=base, previous=previous, progress=progress)
    seq2seq = checkpoint_is_seq2seq(cfg, start)
    tokenizer = load_tokenizer(start)
    rows, too_long = encode_examples(cfg, tokenizer, examples, seq2seq, train_path)
    device = resolve_device(cfg.training.device)
    precision = precision_for(device, cfg.training)
    model = build_model(cfg, start, seq2seq)  # float32 master weights, autocast as precision says
    steps = total_steps(cfg.training, len(rows))
    train_log: list[dict] = []
    with _scratch_dir(out_dir) as scratch, track("train", "steps", steps) as tracker:
        args = training_arguments(cfg, scratch, steps, device=device, precision=precision)
        trainer = build_trainer(model, tokenizer, rows, args, seq2seq=seq2seq, packing=packs_on(cfg.training.packing, device),
                                progress=_with_loss(tracker, progress, train_log), train_log=train_log)
        with quiet_transformers(), training_attention(device, cfg.student.model):
            output = trainer.train()
            if not trainer.is_world_process_zero():
                return None  # another data-parallel worker: rank 0 alone writes the model, logs and MANIFEST
            outputs = _save(trainer.model, tokenizer, out_dir, lora=cfg.training.method == "lora", start=start)
    counts = _counts(output, train_log, examples=len(rows), too_long=too_long)
    seconds = round(time.perf_counter() - started, 3)
    collator = trainer.data_collator
    facts = {"base": str(base), "start": str(start), "train_path": str(train_path), "seq2seq": seq2seq,
             "device": device, "precision": precision, "total_steps": steps, "counts": counts, "seconds": seconds,
             "packed": isinstance(collator, PackingCollator) and collator.pack,
             "padding_share": collator.padding_share() if isinstance(collator, PackingCollator) else None}
    outputs.update(write_logs(out_dir, train_log, cfg, facts))
    result = TrainResult(outputs=outputs, counts=TrainCounts(**counts), seconds=seconds)
    return finish_stage(out_dir, {"train": train_path}, result)


def _counts(output: Any, train_log: list[dict], *, examples: int, too_long: int) -> dict:
    losses = [row["loss"] for row in train_log if "loss" in row]
    return {
        "examples": examples,
        "too_long": too_long,
        "steps": output.global_step,
        "train_loss": round(float(output.training_loss), 6),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
    }


def write_logs(out_dir: Path, train_log: list[dict], cfg: FDDConfig, facts: dict) -> dict[str, str]:
    """out_dir/train_log.jsonl, then out_dir/training_config.json (the resolved config, facts, versions)."""
    import torch
    import transformers

    atomic_write_text(out_dir / "train_log.jsonl", "".join(json.dumps(row) + "\n" for row in train_log))
    resolved = {"fdd_config": cfg.model_dump(mode="json"), **facts,
                "versions": {"transformers": transformers.__version__, "torch": torch.__version__}}
    config = atomic_write_text(out_dir / "training_config.json", json.dumps(resolved, indent=2) + "\n")
    return {"log": str(out_dir / "train_log.jsonl"), "config": str(config)}


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
            write_model_manifest(tmp)

        outputs["adapter"] = str(save_dir_atomically(out_dir / "adapter", write_adapter))
        model = model.merge_and_unload()
    else:
        shutil.rmtree(out_dir / "adapter", ignore_errors=True)  # a stale adapter from an earlier LoRA run

    def write_model(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_model_manifest(tmp)

    outputs["model"] = str(save_dir_atomically(out_dir / "model", write_model))
    return outputs
