"""Student inference: questions -> program-of-thought programs, with transformers (`hf`, batched, CPU or GPU)
or vLLM (`vllm`, GPU, run by vllm_worker.py in a child process with its own Python environment).

Both backends get the same prompts, built here with the student's own format and tokenized once, so a
backend switch changes speed, never what the student is asked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdd_core.config import InferenceConfig
from fdd_core.config_files import ConfigError
from fdd_core.student.prompting import build_prompt, program_from_generation

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (problems done, problems in all)
WORKER = Path(__file__).with_name("vllm_worker.py")
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for max_lora_rank


class StudentNotFound(ValueError):
    """A student path that holds no model (config.json) and no adapter (adapter_config.json)."""


@dataclass(frozen=True)
class StudentInfo:
    """What a student folder is, read from its JSON files without loading any weights."""

    path: Path
    base: str  # the full model: the folder itself, or the adapter's base (a path or Hub id)
    adapter: bool
    lora_rank: int | None
    seq2seq: bool


# A Hub id: "name" or "owner/name" (letters, digits, '-', '_', '.'), as huggingface_hub validates repo ids
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(?:/[A-Za-z0-9][\w.-]{0,95})?")


def locate_student(ref: str | Path) -> Path:
    """The local folder of a student: a folder as given; a GGUF file converted once into the model cache; a Hub id
    resolved to its snapshot in the Hugging Face cache (downloaded when online; HF_HUB_OFFLINE=1: cache only)."""
    from fdd_core.student.factory import is_gguf_name

    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if is_gguf_name(ref) and path.is_file():
        from fdd_core.student.gguf import convert_gguf
        from fdd_core.student.pretrained import model_cache

        return convert_gguf(path, model_cache() / "converted" / path.stem)
    text = str(ref)
    if path.exists() or not _HUB_ID.fullmatch(text) or text.endswith((".json", ".gguf", ".safetensors")):
        raise StudentNotFound(f"student not found: {text} is not a folder, a GGUF file or a Hub id")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text))
    except Exception as e:  # offline and not cached, no such repo, gated: all mean "not here"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudentNotFound(f"student not found: {text} is not a folder, and as a Hub id it could not be had "
                              f"({type(e).__name__}: {reason[:200]})") from None


def inspect_student(model_path: str | Path) -> StudentInfo:
    """Read a student: a full checkpoint or a PEFT adapter over a base model, in a folder (locate_student: a
    GGUF file or a Hub id is first made a folder)."""
    path = locate_student(model_path)
    adapter_file = path / "adapter_config.json"
    if adapter_file.is_file():
        adapter = json.loads(adapter_file.read_text(encoding="utf-8"))
        base, rank = str(adapter.get("base_model_name_or_path") or ""), adapter.get("r")
        if not base:
            raise StudentNotFound(f"{adapter_file}: no base_model_name_or_path")
    elif (path / "config.json").is_file():
        base, rank = str(path), None
    else:
        hint = f" (did you mean {path / 'model'}?)" if (path / "model" / "config.json").is_file() else ""
        raise StudentNotFound(f"student not found: {path} holds no config.json or adapter_config.json{hint}")
    from fdd_core.student.factory import is_seq2seq  # imports transformers: only once we know there is a model

    return StudentInfo(path, base, adapter_file.is_file(), rank, is_seq2seq(base))


def generate_programs(
    model_path: str | Path,
    questions: Sequence[str],
    cfg: InferenceConfig,
    *,
    samples: int = 1,
    seed: int = 0,
    progress: Progress | None = None,
    device: str = "auto",
) -> list[list[str]]:
    """Per question (input order), `samples` programs: greedy when cfg.temperature is 0, else sampled."""
    texts = generate_texts(model_path, questions, cfg, samples=samples, seed=seed, progress=progress, device=device)
    return [[program_from_generation(t) for t in row] for row in texts]


def generate_texts(
    model_path: str | Path,
    questions: Sequence[str],
    cfg: InferenceConfig,
    *,
    samples: int = 1,
    seed: int = 0,
    progress: Progress | None = None,
    device: str = "auto",
    ignore_eos: bool = False,
) -> list[list[str]]:
    """The raw continuations behind generate_programs (evaluation also reads answers out of them).

    Greedy decoding with samples > 1 decodes once and repeats the result: the samples would be identical.
    ignore_eos (benchmarks only) makes every continuation exactly max_new_tokens long.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    info = inspect_student(model_path)
    questions = list(questions)
    if not questions:
        return []
    n = 1 if cfg.temperature == 0 else samples
    backend = cfg.backend
    if backend == "vllm" and info.seq2seq:
        # vLLM serves decoder-only models; falling back keeps a T5 run going instead of failing a round
        log.warning("the vllm backend does not serve seq2seq students: generating with hf instead")
        backend = "hf"
    run = _generate_vllm if backend == "vllm" else _generate_hf
    texts = run(info, questions, cfg, n=n, seed=seed, progress=progress, device=device, ignore_eos=ignore_eos)
    return [row * samples if n == 1 else row for row in texts]


# ------------------------------------------------------------------------------------------------- hf
def _generate_hf(info: StudentInfo, questions: list[str], cfg: InferenceConfig, *, n: int, seed: int,
                 progress: Progress | None, device: str, ignore_eos: bool) -> list[list[str]]:
    import torch
    from transformers import GenerationConfig

    from fdd_core.student.factory import load_student

    student = load_student(info.path, device=device)  # float32 on CPU, bfloat16 on CUDA
    model, tokenizer = student.model, student.tokenizer
    if info.adapter:  # fold LoRA into the weights once: the adapter's extra matmuls would slow every step
        model = model.merge_and_unload()
    model.eval()
    prompt_ids = tokenizer([build_prompt(tokenizer, q) for q in questions])["input_ids"]
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    # Every sampling knob set explicitly: generate() fills unset ones from the checkpoint's own defaults
    # (Qwen ships top_p and repetition_penalty), which would change what "greedy" or "temperature" mean.
    sample = cfg.temperature > 0
    knobs = {"temperature": cfg.temperature, "top_k": 0, "top_p": 1.0} if sample else {}
    gen = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.max_new_tokens if ignore_eos else 0,
        do_sample=sample, num_beams=1, num_return_sequences=n, repetition_penalty=1.0, no_repeat_ngram_size=0,
        eos_token_id=eos_ids, pad_token_id=pad_id, bos_token_id=model.generation_config.bos_token_id,
        decoder_start_token_id=model.generation_config.decoder_start_token_id, **knobs,
    )
    # Longest prompts first: similar lengths share a batch (little padding), and an out-of-memory shows at once.
    order = sorted(range(len(questions)), key=lambda i: -len(prompt_ids[i]))
    per_batch = max(1, cfg.batch_size // n)  # batch_size counts sequences, so samples shrink the batch
    dev = next(model.parameters()).device
    out: list[list[str]] = [[] for _ in questions]
    # A private RNG stream: sampling is reproducible for `seed` and the caller's torch RNG is left as it was.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, len(order), per_batch):
            batch = order[start:start + per_batch]
            input_ids, mask = _left_pad([prompt_ids[i] for i in batch], pad_id, dev)
            generated = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen)
            if not student.seq2seq:
                generated = generated[:, input_ids.shape[1]:]
            for row, tokens in enumerate(generated.tolist()):
                out[batch[row // n]].append(_decode(tokenizer, tokens, eos_ids, ignore_eos))
            if progress is not None:
                progress(min(start + per_batch, len(order)), len(order))
    return out


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    ids = [i for i in dict.fromkeys(ids) if i is not None]
    if not ids:
        raise ValueError("the student has no EOS token: generation could not stop")
    return ids


def _left_pad(rows: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    # Left padding for every architecture: causal models must continue right after the prompt, and an
    # encoder ignores masked positions wherever they are.
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        if r:
            ids[k, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[k, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def _decode(tokenizer: Any, tokens: list[int], eos_ids: list[int], ignore_eos: bool = False) -> str:
    """Text up to the first EOS: what follows it is padding, whatever the pad token is."""
    if not ignore_eos:
        ends = [tokens.index(e) for e in eos_ids if e in tokens]
        tokens = tokens[: min(ends)] if ends else tokens
    return tokenizer.decode(tokens, skip_special_tokens=True)


# ----------------------------------------------------------------------------------------------- vllm
def vllm_python(cfg: InferenceConfig) -> Path:
    """The vLLM environment's interpreter from inference.vllm_python, or a one-line ConfigError."""
    how = ("point inference.vllm_python at the python of a separate environment with vLLM installed "
           "(e.g. --set inference.vllm_python=/opt/vllm-env/bin/python), or use inference.backend=hf")
    if not cfg.vllm_python:
        raise ConfigError(f"inference.backend=vllm needs inference.vllm_python: {how}")
    path = Path(cfg.vllm_python).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"inference.vllm_python={cfg.vllm_python}: no such executable file; {how}")
    return path


def visible_gpus() -> int:
    """CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies); the vLLM child sees the same ones."""
    import torch

    return torch.cuda.device_count()


def check_vllm_sizes(cfg: InferenceConfig, gpus: int) -> None:
    """One line when tensor_parallel_size x data_parallel_size GPUs are more than are visible."""
    wanted = cfg.tensor_parallel_size * cfg.data_parallel_size
    if wanted > gpus:
        raise ConfigError(f"inference.tensor_parallel_size={cfg.tensor_parallel_size} x inference.data_parallel_size="
                          f"{cfg.data_parallel_size} needs {wanted} GPUs; {gpus} visible (CUDA_VISIBLE_DEVICES="
                          f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")


def _generate_vllm(info: StudentInfo, questions: list[str], cfg: InferenceConfig, *, n: int, seed: int,
                   progress: Progress | None, device: str, ignore_eos: bool) -> list[list[str]]:
    python = vllm_python(cfg)
    if cfg.tensor_parallel_size * cfg.data_parallel_size > 1:  # one GPU: vLLM's own error says it best
        check_vllm_sizes(cfg, visible_gpus())
    from fdd_core.student.factory import has_tokenizer_files, load_tokenizer

    tokenizer_from = str(info.path) if has_tokenizer_files(info.path) else info.base
    tokenizer = load_tokenizer(tokenizer_from)  # no weights: the GPU is the child's alone
    job = {
        "model": info.base,
        "tokenizer": tokenizer_from,
        "lora": str(info.path) if info.adapter else None,
        "max_lora_rank": next((r for r in VLLM_LORA_RANKS if r >= (info.lora_rank or 1)), info.lora_rank),
        "prompt_token_ids": tokenizer([build_prompt(tokenizer, q) for q in questions])["input_ids"],
        "n": n,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_new_tokens,
        "seed": seed,
        "ignore_eos": ignore_eos,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "data_parallel_size": cfg.data_parallel_size,
    }
    result = run_vllm_worker(python, job)
    eos_ids = [i for i in (tokenizer.eos_token_id,) if i is not None]
    out = [[_decode(tokenizer, c["token_ids"], eos_ids, ignore_eos) for c in row] for row in result["outputs"]]
    if len(out) != len(questions) or any(len(row) != n for row in out):
        raise RuntimeError(f"the vLLM worker returned {len(out)} rows for {len(questions)} prompts")
    if progress is not None:
        progress(len(questions), len(questions))
    return out


def run_vllm_worker(python: Path, job: dict) -> dict:
    """Run vllm_worker.py under `python` on one job; its GPU memory is returned when the child exits."""
    # The child gets this environment minus what would make the other interpreter import our packages.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    with tempfile.TemporaryDirectory(prefix="fdd-vllm-") as tmp:
        job_path, out_path, log_path = Path(tmp, "job.json"), Path(tmp, "out.json"), Path(tmp, "worker.log")
        job_path.write_text(json.dumps(job), encoding="utf-8")
        started = time.monotonic()
        with log_path.open("wb") as log_file:
            code = subprocess.run([str(python), str(WORKER), str(job_path), str(out_path)], env=env,
                                  stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT).returncode
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        if code == 3:  # the worker's exit code for "vllm cannot be imported"
            raise ConfigError(f"inference.vllm_python={python}: {tail[-1] if tail else 'cannot import vllm'}; "
                              f"install vLLM in that environment")
        if code != 0 or not out_path.is_file():
            raise RuntimeError(f"the vLLM worker failed (exit {code}); its last output:\n" + "\n".join(tail))
        result = json.loads(out_path.read_text(encoding="utf-8"))
    log.info("vLLM %s generated %d prompts in %.1f s (child process, %.1f s generating)",
             result.get("vllm_version", "?"), len(job["prompt_token_ids"]), time.monotonic() - started,
             result.get("seconds", 0.0))
    return result
