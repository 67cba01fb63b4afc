"""FDD's configuration: one pydantic model per concern under FDDConfig, YAML profiles, dotted overrides.

Every field has a default and a one-line description: the Prefect UI shows those as the run form's
help, and `fdd run` with no argument must work on the defaults alone (the embedded, offline demo).
Secrets never live here: the teacher names the environment variable that holds its key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_LIMIT = 2**32  # numpy's seeds are below 2**32 (torch's below 2**63): a run seed must suit both
MAX_WORKERS = 256  # sandbox workers: more processes than any machine here runs usefully at once
MAX_CONCURRENCY = 1024  # teacher requests in flight at once
MAX_TRAIN_PROCESSES = 64  # data-parallel training processes on one machine (8 GPUs is the usual most)
MAX_PROGRAM_S = 3600.0  # one sandboxed program's wall-clock limit (a timer and rlimits must hold it)


class _Section(BaseModel):
    # extra="forbid" turns a typo in a profile into an error that names the key
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    name: str = Field("demo", min_length=1, description="Run name: its run directory is the folder of this name inside runs_dir.")
    runs_dir: str = Field("runs", description="Folder that holds one run directory per run.")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="Seed for data splits, sampling and training (0 to 2**32-1).")
    rounds: int = Field(3, ge=0, description="Feedback rounds after the initial distillation (round 0).")
    min_gain: float | None = Field(
        None, description="Stop early when held-out accuracy gains less than this over the best round (a fraction)."
    )
    baseline: bool | None = Field(
        None, description="Evaluate the base student before round 0 (the report's 'base' row). Unset: only for a "
        "pretrained student; a from_config base is random weights (0% by construction; writing 256 tokens of noise "
        "per problem took ~10 minutes on the demo's 400 problems).",
    )
    gpu_work_pool: str | None = Field(
        None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Prefect work pool of the GPU stages: when set, training, evaluation and feedback run as flow "
        "runs of the fdd-train, fdd-evaluate and fdd-feedback deployments named after this pool (deployments/"
        "prefect.yaml), each in a process of its own; unset, every stage runs in the run's own process.",
    )


class ProblemColumns(_Section):
    """How to read the user's problems from a file or a Hub dataset: which column holds what."""

    question: str = Field("question", min_length=1, description="Column holding the problem text.")
    answer: str = Field(
        "answer", min_length=1,
        description="Column holding the gold answer: a number, or a worked solution whose last line is '#### N'.",
    )
    solution: str | None = Field(
        None, description="Optional column holding a worked solution or a program, kept with each problem.")
    id: str | None = Field(
        None, description="Optional column holding a unique id per problem; unset: an id derived from the question "
        "text (the same wherever the file is loaded from).",
    )
    config: str | None = Field(None, description="Hub datasets only: the dataset's config (subset), if it has several.")
    split: str | None = Field(
        None, description="Hub datasets only: the split to read (unset: train for seeds, test for a benchmark)."
    )


class UserBenchmark(ProblemColumns):
    """A benchmark of the user's own: where its problems are and which columns hold what."""

    path: str = Field(
        "", description="A local JSONL, CSV or Parquet file, or hub:owner/name for a Hugging Face Hub dataset."
    )


class DataConfig(_Section):
    seed_set: str = Field(
        "synthetic", min_length=1,
        description="Seed problems: synthetic (the embedded domain), gsm8k-train, a local JSONL, CSV or Parquet "
        "file of your own, or hub:owner/name (a Hugging Face Hub dataset); data.seed_columns says how to read them.",
    )
    seed_columns: ProblemColumns = Field(
        default_factory=ProblemColumns,
        description="Columns of a seed file or Hub dataset (question, answer, optional solution and id), and the "
        "Hub config and split.",
    )
    n_seed: int = Field(400, ge=1, description="Number of seed problems to start from.")
    n_synthetic_test: int = Field(400, ge=0, description="Held-out synthetic test problems (synthetic seed set only).")
    benchmarks: list[str] = Field(
        default_factory=lambda: ["synthetic-test"], min_length=1,
        description="Benchmarks evaluated every round (the first is the primary one): built-in names, e.g. gsm8k, "
        "svamp, asdiv, multiarith, gsm-hard, or names defined in data.user_benchmarks.",
    )
    user_benchmarks: dict[str, UserBenchmark] = Field(
        default_factory=dict,
        description="Benchmarks of your own, by name: a file (JSONL, CSV, Parquet) or hub:owner/name and its "
        "columns. List a name in data.benchmarks to evaluate on it; generated problems are decontaminated "
        "against every listed benchmark.",
    )
    eval_limit: int | None = Field(None, ge=1, description="Evaluate at most this many problems per benchmark.")
    source: Literal["auto", "local", "hub"] = Field(
        "auto", description="Where benchmarks come from: local files, the Hugging Face Hub, or auto (local if found)."
    )
    data_dir: str | None = Field(
        None, description="Folder of local benchmark files (layout of shared/data); FDD_DATA_DIR when unset."
    )

    @field_validator("benchmarks")
    @classmethod
    def _listed_once(cls, names: list[str]) -> list[str]:
        # Unknown names are checked where the run reads them (run_data.check_run_values): a deployment's run
        # then fails with that one line as its state message, not with Prefect's parameter-validation dump.
        if len(set(names)) != len(names):
            raise ValueError("a benchmark is listed twice")
        return names


class TeacherConfig(_Section):
    model: str = Field(
        "fdd-offline/teacher",
        description="litellm model name, e.g. gpt-4o-mini, anthropic/claude-3-5-haiku, hosted_vllm/NAME.",
    )
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server (vLLM, Ollama, fdd teacher serve).")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (the key itself never goes in config)."
    )
    k_solutions: int = Field(4, ge=1, description="Program-of-thought solutions requested per seed problem.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of teacher requests.")
    max_tokens: int = Field(768, ge=16, description="Maximum tokens of one teacher reply.")
    concurrency: int = Field(8, ge=1, le=MAX_CONCURRENCY, description="Teacher requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, le=86400, description="Timeout of one teacher request, in seconds.")
    max_retries: int = Field(5, ge=0, le=100, description="Retries on rate limits, timeouts and server errors.")
    max_failed_share: float = Field(
        0.5, ge=0.0, le=1.0,
        description="A teacher stage whose failed requests (after retries) exceed this share of those sent fails "
        "instead of completing, and is not kept as done.",
    )
    cache_path: str = Field(
        "~/.cache/fdd/teacher.sqlite", description="Response store shared by all runs: a reply is never paid twice."
    )
    offline_error_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="Offline teacher only: share of replies made wrong or malformed on purpose."
    )


class StudentConfig(_Section):
    model: str = Field(
        "from_config", description="Hub id or local path of the base checkpoint, or from_config for a tiny model."
    )
    architecture: Literal["causal", "seq2seq"] = Field(
        "causal", description="Causal LM (Llama, Qwen, SmolLM) or encoder-decoder (T5, CodeT5)."
    )
    hidden_size: int = Field(128, ge=8, description="from_config only: hidden size of the tiny model.")
    num_layers: int = Field(2, ge=1, description="from_config only: number of transformer layers.")
    num_heads: int = Field(4, ge=1, description="from_config only: attention heads.")
    max_length: int = Field(384, ge=32, description="Maximum tokens of prompt plus program.")


class TrainingConfig(_Section):
    method: Literal["full", "lora"] = Field("full", description="Full fine-tuning or LoRA adapters (peft).")
    epochs: float = Field(3.0, gt=0, description="Training epochs over the round's distillation set.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps (overrides epochs).")
    batch_size: int = Field(32, ge=1, description="Training examples per optimiser step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (1e-3 suits the tiny from_config student; ~2e-5 a hub model).")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA adapters' input.")
    warmup: float = Field(
        0.05, ge=0.0, description="Linear warmup: below 1 a share of the optimiser steps, from 1 up a number of steps."
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup (constant ignores warmup)."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Batches accumulated per optimiser step (an effective batch of batch_size times this)."
    )
    group_by_length: bool = Field(
        False, description="Batch examples of similar length: less padding, but on the tiny student at lr 3e-3 it cut "
        "held-out accuracy from ~94% to 20% (bench/bench_student_learning.py).",
    )
    packing: bool | None = Field(
        None, description="Causal students: lay each batch's examples end to end in rows (position ids restarting per "
        "example) instead of padding them; the same examples and loss, fewer tokens (fdd_core/student/packing.py). "
        "Unset: on when training on the CPU, off on CUDA, where packed rows trained slower (bench_gpu_check.py).",
    )
    logging_steps: int = Field(10, ge=1, description="Log loss and learning rate every this many optimiser steps.")
    continue_from_previous: bool = Field(
        False, description="Start each round from the previous round's student instead of the base (paper: base)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train: auto picks CUDA when present.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Autocast over float32 weights. auto: bf16 on CUDA (fp16 where the GPU lacks bf16), and on "
        "a CPU that computes bf16 in hardware (AVX512-BF16 or AMX: 1.17-1.22x the steps a second of fp32 on the demo "
        "student, the same held-out accuracy), fp32 on other CPUs. fp16 needs training.device: cuda.",
    )
    processes: int = Field(
        1, ge=1, le=MAX_TRAIN_PROCESSES,
        description="Data-parallel training processes (torchrun; one per GPU on CUDA, gloo on the CPU); each takes "
                    "batch_size / processes examples of every step, so batch_size must be a multiple of it.",
    )


def precision_error(tc: TrainingConfig) -> str | None:
    """Why training.precision cannot go with training.device, or None when it can."""
    if tc.precision == "fp16" and tc.device != "cuda":
        return (f"training.precision=fp16 needs training.device=cuda (it is {tc.device}): fp16 autocast is for GPUs; "
                "set training.precision to auto, bf16 or fp32")
    return None


def batch_split_error(tc: TrainingConfig) -> str | None:
    """Why training.batch_size cannot be shared among training.processes, or None when it can."""
    if tc.batch_size % tc.processes == 0:
        return None
    return (f"training.batch_size={tc.batch_size} is not a multiple of training.processes={tc.processes}: each "
            f"process takes batch_size / processes examples of a step (e.g. training.batch_size="
            f"{tc.processes * max(1, round(tc.batch_size / tc.processes))})")


class InferenceConfig(_Section):
    backend: Literal["hf", "vllm"] = Field("hf", description="hf (transformers generate) or vllm (GPU, own environment).")
    batch_size: int = Field(64, ge=1, description="Problems per generation batch (hf backend).")
    max_new_tokens: int = Field(256, ge=1, description="Maximum tokens the student writes per problem.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 for greedy decoding; above 0 samples.")
    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="vllm backend: GPUs that share one copy of the student (vLLM tensor_parallel_size)."
    )
    data_parallel_size: int = Field(
        1, ge=1, le=64, description="vllm backend: copies of the student, each on tensor_parallel_size GPUs and "
                                    "given its share of the prompts (vLLM's offline data-parallel recipe).",
    )
    vllm_python: str | None = Field(
        None, description="Python interpreter of the separate vLLM environment (vllm backend only)."
    )


class FeedbackConfig(_Section):
    samples_per_problem: int = Field(1, ge=1, description="Student attempts per pool problem.")
    easy_min_correct: int = Field(1, ge=1, description="A problem is easy when at least this many attempts are right.")
    harder_per_easy: int = Field(1, ge=0, description="Harder variants the teacher writes per easy problem.")
    similar_per_hard: int = Field(2, ge=0, description="Similar problems the teacher writes per hard problem.")


class CurationConfig(_Section):
    votes: int = Field(3, ge=1, description="Independent teacher solutions of a generated question (self-consistency).")
    min_agree: int = Field(2, ge=1, description="Votes that must agree with the proposed program's answer.")
    near_duplicate_threshold: float = Field(
        0.9, gt=0.0, le=1.0, description="Word n-gram Jaccard similarity above which two questions are duplicates."
    )
    decontamination_ngram: int = Field(
        8, ge=3, description="A shared word n-gram of this length with a benchmark test item marks contamination."
    )
    embedding_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="Also drop questions whose embedding similarity to a test item exceeds this."
    )


class BudgetConfig(_Section):
    max_usd: float | None = Field(None, ge=0, description="Stop teacher generation once this much has been spent.")
    max_requests: int | None = Field(None, ge=0, description="Stop teacher generation after this many paid requests.")


class SandboxConfig(_Section):
    timeout_s: float = Field(2.0, gt=0, le=MAX_PROGRAM_S, description="Wall-clock limit of one program, in seconds.")
    memory_mb: int = Field(256, ge=32, le=1 << 20, description="Memory limit of one program, in MiB.")
    workers: int | None = Field(None, ge=1, le=MAX_WORKERS,
                                description="Warm sandbox worker processes (default: CPU count).")


class FDDConfig(_Section):
    """Everything a run reads; saved resolved beside its outputs."""

    run: RunConfig = Field(default_factory=RunConfig, description="The run: name, folder, seed, rounds.")
    data: DataConfig = Field(default_factory=DataConfig, description="Seed problems and benchmarks.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher LLM, reached through litellm.")
    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Fine-tuning of the student.")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Batched student generation.")
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig, description="Easy/hard split and generation.")
    curation: CurationConfig = Field(default_factory=CurationConfig, description="Filters on generated data.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Caps on teacher spending.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits of untrusted program runs.")


# The tiny from_config student's training settings (the demo profile's rate and step count): right for 0.5M random
# weights, ruinous for a pretrained model (lr 1e-3 wipes out what it knows; 600 steps of 32 is hours on a CPU).
# configs/pretrained.yaml holds settings for pretrained students, chosen from peers' defaults.
TINY_LEARNING_RATE = 5e-4  # at or above: a rate for random weights, not for fine-tuning


def pretrained_student_warning(cfg: FDDConfig) -> str | None:
    """One line when a pretrained student (student.model is not from_config) meets the tiny student's training
    settings, naming them and what to use instead; None when the settings suit it."""
    if cfg.student.model == "from_config":
        return None
    from .config_files import load_config  # the demo profile's steps and batch, read where they are set

    tc, demo = cfg.training, load_config("demo").training
    found = []
    if tc.learning_rate >= TINY_LEARNING_RATE:
        found.append(f"training.learning_rate={tc.learning_rate:g}")
    if tc.max_steps == demo.max_steps and tc.batch_size == demo.batch_size:
        found.append(f"training.max_steps={tc.max_steps} at training.batch_size={tc.batch_size}")
    if not found:
        return None
    return (f"student.model={cfg.student.model} is a pretrained model, but it has the tiny from_config student's "
            f"{' and '.join(found)}; use --config pretrained (LoRA at lr 2e-4, 3 epochs, batch 16) or set "
            "training.learning_rate (2e-5 full, 2e-4 LoRA) and training.epochs/max_steps")
