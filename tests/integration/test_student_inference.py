"""Student inference on tiny random students: batched hf generation equals one-at-a-time generation
(left padding, order), sampling is seeded, and the vllm backend's child-process protocol and its errors."""

from __future__ import annotations

import ast
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from fdd_core import synthetic
from fdd_core.config import InferenceConfig, StudentConfig
from fdd_core.config_files import ConfigError
from fdd_core.student.checkpoint import write_model_manifest
from fdd_core.student.factory import build_tiny_student, load_student
from fdd_core.student.infer import WORKER, StudentNotFound, generate_programs, generate_texts, inspect_student
from fdd_core.student.prompting import build_prompt, program_from_generation

GEN = InferenceConfig(batch_size=5, max_new_tokens=20)


def make_tiny_student(out_dir: Path, architecture: str = "causal", *, std: float = 0.2, seed: int = 0) -> Path:
    """A tiny random student. Its weights are redrawn with a large std: at the usual 0.02 a random model
    writes one token over and over, and batched-vs-single comparisons of such output would prove nothing."""
    seeds, _ = synthetic.make_splits(n_seed=60, n_test=0, seed=seed)
    texts = [p.question for p in seeds] + [p.solution or "" for p in seeds]
    student_cfg = StudentConfig(architecture=architecture, hidden_size=64, num_layers=2, num_heads=4)
    path = build_tiny_student(student_cfg, texts, out_dir, seed=seed)
    student = load_student(path)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in student.model.named_parameters():
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    student.model.save_pretrained(path)
    write_model_manifest(path)  # the weights were redrawn on purpose: the folder's manifest says so
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny models gain nothing from two threads, and on a shared 2-core machine OpenMP threads waiting on a
    # descheduled sibling make generation tens of times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    root = tmp_path_factory.mktemp("students")
    return {arch: make_tiny_student(root / arch, arch) for arch in ("causal", "seq2seq")}


@pytest.fixture(scope="module")
def questions():
    # steps 1..8 and two sizes of distractors: prompt lengths differ, so batches really are padded
    _, test = synthetic.make_splits(n_seed=0, n_test=16, seed=3, test_steps=range(1, 9))
    return [p.question for p in test][::-1] + ["How many?"]


@pytest.mark.parametrize("architecture", ["causal", "seq2seq"])
def test_batched_greedy_equals_one_at_a_time(students, questions, architecture):
    batched = generate_texts(students[architecture], questions, GEN)
    single = generate_texts(students[architecture], questions, GEN.model_copy(update={"batch_size": 1}))
    assert [len(row) for row in batched] == [1] * len(questions)
    assert len({row[0] for row in batched}) > len(questions) // 2, "degenerate output proves nothing"
    assert batched == single
    programs = generate_programs(students[architecture], questions, GEN)
    assert programs == [[program_from_generation(row[0])] for row in batched]


def test_sampling_is_seeded_and_gives_the_asked_number_of_samples(students, questions):
    cfg = GEN.model_copy(update={"temperature": 1.0})
    first = generate_texts(students["causal"], questions[:6], cfg, samples=3, seed=1)
    assert [len(row) for row in first] == [3] * 6
    assert generate_texts(students["causal"], questions[:6], cfg, samples=3, seed=1) == first
    assert generate_texts(students["causal"], questions[:6], cfg, samples=3, seed=2) != first
    assert any(len(set(row)) > 1 for row in first), "the samples of a question are not independent draws"
    assert generate_programs(students["causal"], questions[:6], cfg, samples=3, seed=1) == [
        [program_from_generation(t) for t in row] for row in first]


def test_greedy_with_several_samples_repeats_the_one_greedy_answer(students, questions):
    rows = generate_texts(students["causal"], questions[:3], GEN, samples=2)
    assert rows == [[row[0]] * 2 for row in generate_texts(students["causal"], questions[:3], GEN)]
    assert generate_texts(students["causal"], [], GEN) == []


def test_a_path_without_a_model_is_refused(tmp_path):
    with pytest.raises(StudentNotFound, match="is not a folder"):
        inspect_student(tmp_path / "missing")
    with pytest.raises(StudentNotFound, match="no config.json or adapter_config.json"):
        generate_programs(tmp_path, ["q"], GEN)


# ------------------------------------------------------------------------------------------- vllm
def test_vllm_backend_without_its_environment_names_the_setting(students, tmp_path):
    vllm = GEN.model_copy(update={"backend": "vllm"})
    with pytest.raises(ConfigError, match=r"inference\.backend=vllm needs inference\.vllm_python"):
        generate_programs(students["causal"], ["q"], vllm)
    missing = vllm.model_copy(update={"vllm_python": str(tmp_path / "no-env" / "bin" / "python")})
    with pytest.raises(ConfigError, match=r"inference\.vllm_python=.*no-env.*no such executable"):
        generate_programs(students["causal"], ["q"], missing)
    # an interpreter that exists but has no vllm: the worker says so, in one line
    without = vllm.model_copy(update={"vllm_python": sys.executable})
    with pytest.raises(ConfigError, match=r"cannot import vllm.*install vLLM in that environment"):
        generate_programs(students["causal"], ["q"], without)


def test_seq2seq_students_fall_back_to_hf_under_vllm(students, questions, caplog):
    vllm = GEN.model_copy(update={"backend": "vllm"})  # no vllm_python: the fallback must not need one
    with caplog.at_level(logging.WARNING, logger="fdd_core.student.infer"):
        texts = generate_texts(students["seq2seq"], questions[:4], vllm)
    assert texts == generate_texts(students["seq2seq"], questions[:4], GEN)
    assert "does not serve seq2seq" in caplog.text


STAND_IN_VLLM = '''
"""A stand-in for vllm with its API shape: each completion echoes the last k+2 prompt tokens."""
import json, os
__version__ = "stand-in"

class SamplingParams:
    def __init__(self, n=1, temperature=0.0, max_tokens=16, ignore_eos=False):
        self.n, self.temperature, self.max_tokens, self.ignore_eos = n, temperature, max_tokens, ignore_eos

class _Completion:
    def __init__(self, ids):
        self.token_ids, self.text, self.finish_reason = ids, "", "length"

class _Result:
    def __init__(self, outputs):
        self.outputs = outputs

class LLM:
    def __init__(self, **engine_args):
        self.engine_args = engine_args

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        with open(os.environ["STAND_IN_VLLM_LOG"], "a") as f:  # one line per engine (a DP rank each)
            f.write(json.dumps({
                "engine": self.engine_args, "lora": lora_request and lora_request.args, "n": params.n,
                "temperature": params.temperature, "max_tokens": params.max_tokens,
                "prompts": [p["prompt_token_ids"] for p in prompts],
                "dp": {k: v for k, v in os.environ.items() if k.startswith("VLLM_DP_")}}) + "\\n")
        return [_Result([_Completion(p["prompt_token_ids"][-(k + 2):]) for k in range(params.n)]) for p in prompts]
'''
STAND_IN_LORA = '''
class LoRARequest:
    def __init__(self, *args):
        self.args = list(args)
'''


@pytest.fixture
def stand_in_vllm_python(tmp_path, monkeypatch):
    """An 'interpreter' whose environment has the stand-in vllm: a wrapper script, as a user's could be."""
    site = tmp_path / "site"
    (site / "vllm" / "lora").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text(STAND_IN_VLLM)
    (site / "vllm" / "lora" / "__init__.py").write_text("")
    (site / "vllm" / "lora" / "request.py").write_text(STAND_IN_LORA)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("STAND_IN_VLLM_LOG", str(tmp_path / "job.json"))
    return wrapper, tmp_path / "job.json"


def test_vllm_worker_protocol_order_samples_and_prompts(students, questions, stand_in_vllm_python):
    python, job_log = stand_in_vllm_python
    cfg = GEN.model_copy(update={"backend": "vllm", "vllm_python": str(python), "temperature": 0.8})
    texts = generate_texts(students["causal"], questions, cfg, samples=2, seed=5)
    tokenizer = load_student(students["causal"]).tokenizer
    ids = tokenizer([build_prompt(tokenizer, q) for q in questions])["input_ids"]
    # the parent built the prompts; the child saw exactly those tokens, and answers came back in order
    assert texts == [[tokenizer.decode(p[-(k + 2):], skip_special_tokens=True) for k in range(2)] for p in ids]
    [job] = engines(job_log)
    assert job["engine"]["tensor_parallel_size"] == 1 and job["dp"] == {}
    assert job["n"] == 2 and job["temperature"] == 0.8 and job["max_tokens"] == 20 and job["lora"] is None
    assert job["engine"]["model"] == str(students["causal"]) and job["engine"]["seed"] == 5


def test_vllm_worker_serves_a_lora_adapter_over_its_base(students, tmp_path, stand_in_vllm_python):
    from peft import LoraConfig, get_peft_model

    python, job_log = stand_in_vllm_python
    base = load_student(students["causal"])
    adapter = get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    adapter.save_pretrained(tmp_path / "adapter")
    base.tokenizer.save_pretrained(tmp_path / "adapter")
    cfg = GEN.model_copy(update={"backend": "vllm", "vllm_python": str(python)})
    assert len(generate_programs(tmp_path / "adapter", ["How many?"], cfg)) == 1
    [job] = engines(job_log)
    assert job["lora"] == ["student", 1, str(tmp_path / "adapter")]
    assert job["engine"]["enable_lora"] is True and job["engine"]["max_lora_rank"] == 8  # r=4 rounded up
    assert Path(job["engine"]["model"]).resolve() == students["causal"].resolve()


def engines(job_log: Path) -> list[dict]:
    """What each engine the worker built was given, in the order the engines generated."""
    return [json.loads(line) for line in job_log.read_text().splitlines()]


def test_vllm_sizes_reach_the_engines_and_data_parallel_ranks_share_the_prompts(
        students, questions, stand_in_vllm_python, monkeypatch):
    """vLLM cannot run here (no CUDA GPU, and it lives in an environment of its own): the stand-in records what
    the worker gives each engine, and the machine is taken to show 4 GPUs (visible_gpus) so the sizes pass."""
    python, job_log = stand_in_vllm_python
    monkeypatch.setattr("fdd_core.student.infer.visible_gpus", lambda: 4)
    cfg = GEN.model_copy(update={"backend": "vllm", "vllm_python": str(python), "temperature": 0.8,
                                 "tensor_parallel_size": 2, "data_parallel_size": 2})
    texts = generate_texts(students["causal"], questions, cfg, samples=2, seed=5)
    tokenizer = load_student(students["causal"]).tokenizer
    ids = tokenizer([build_prompt(tokenizer, q) for q in questions])["input_ids"]
    # the two ranks' answers come back joined in prompt order
    assert texts == [[tokenizer.decode(p[-(k + 2):], skip_special_tokens=True) for k in range(2)] for p in ids]
    ranks = sorted(engines(job_log), key=lambda e: e["dp"]["VLLM_DP_RANK"])
    assert [e["dp"]["VLLM_DP_RANK"] for e in ranks] == ["0", "1"]
    assert {e["dp"]["VLLM_DP_SIZE"] for e in ranks} == {"2"}
    assert len({e["dp"]["VLLM_DP_MASTER_PORT"] for e in ranks}) == 1  # one rendezvous for both ranks
    assert all(e["engine"]["tensor_parallel_size"] == 2 and e["engine"]["seed"] == 5 for e in ranks)
    half = (len(ids) + 1) // 2  # contiguous shares, the first one prompt longer (vLLM's example's split)
    assert [e["prompts"] for e in ranks] == [ids[:half], ids[half:]]


def test_vllm_sizes_beyond_the_visible_gpus_are_one_line(students, stand_in_vllm_python, monkeypatch):
    python, job_log = stand_in_vllm_python
    monkeypatch.setattr("fdd_core.student.infer.visible_gpus", lambda: 4)
    cfg = GEN.model_copy(update={"backend": "vllm", "vllm_python": str(python),
                                 "tensor_parallel_size": 4, "data_parallel_size": 2})
    with pytest.raises(ConfigError, match=r"^inference\.tensor_parallel_size=4 x inference\.data_parallel_size=2 "
                                          r"needs 8 GPUs; 4 visible \(CUDA_VISIBLE_DEVICES=[^\n]*\)$"):
        generate_programs(students["causal"], ["How many?"], cfg)
    assert not job_log.exists()  # no engine was started


def test_vllm_worker_imports_only_the_standard_library_and_vllm():
    tree = ast.parse(WORKER.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    roots = {m.split(".")[0] for m in modules}
    assert roots - {"__future__", "vllm"} <= set(sys.stdlib_module_names), roots
