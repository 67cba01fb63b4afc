"""The vLLM child process: `python vllm_worker.py JOB.json OUT.json` under the vLLM environment's interpreter.

It runs in that other environment, so it imports only the standard library and vllm (never fdd_core).
JOB holds token ids already built by the parent; OUT gets, per prompt, n completions with their token ids.
tensor_parallel_size goes to each engine; data_parallel_size > 1 runs that many engines in processes of their own,
as vLLM's offline data-parallel example does (LLM itself does not spread prompts over DP ranks).
Exit codes: 0 done, 2 bad arguments or job, 3 vllm cannot be imported, 1 anything vLLM raised.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: vllm_worker.py JOB.json OUT.json", file=sys.stderr)
        return 2
    job_path, out_path = argv[1], argv[2]
    try:
        with open(job_path, encoding="utf-8") as f:
            job = json.load(f)
        prompts = [{"prompt_token_ids": [int(t) for t in ids]} for ids in job["prompt_token_ids"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"bad job file {job_path}: {e}", file=sys.stderr)
        return 2
    try:
        import vllm  # noqa: F401 - fails here, before any engine process starts
    except ImportError as e:
        print(f"cannot import vllm in {sys.executable} ({e})", file=sys.stderr)
        return 3
    dp = int(job.get("data_parallel_size") or 1)
    if dp == 1:
        write_json(out_path, generate(job, prompts))
        return 0
    return generate_data_parallel(job, prompts, dp, out_path)


def engine_arguments(job: dict) -> dict:
    """LLM(...) keyword arguments: the model, seed and dtype, GPUs per engine, LoRA, then the job's extras."""
    engine_args = {"model": job["model"], "tokenizer": job.get("tokenizer") or job["model"],
                   "seed": int(job.get("seed", 0)), "dtype": job.get("dtype", "auto"),
                   "tensor_parallel_size": int(job.get("tensor_parallel_size") or 1)}
    if job.get("lora"):
        engine_args.update(enable_lora=True, max_loras=1, max_lora_rank=int(job.get("max_lora_rank") or 16))
    engine_args.update(job.get("engine_args") or {})  # e.g. gpu_memory_utilization, max_model_len
    return engine_args


def generate(job: dict, prompts: list[dict]) -> dict:
    """One engine (on tensor_parallel_size GPUs) over `prompts`: per prompt, n completions with their token ids."""
    import vllm
    from vllm import LLM, SamplingParams

    lora_request = None
    if job.get("lora"):
        from vllm.lora.request import LoRARequest

        lora_request = LoRARequest("student", 1, job["lora"])
    llm = LLM(**engine_arguments(job))
    # No per-request seed: with one, vLLM may give all n samples of a prompt the same generator stream.
    # The engine seed above makes a whole call reproducible instead.
    # top_p/top_k/penalties keep vLLM's defaults (all off), as the hf backend sets them: plain temperature.
    params = SamplingParams(n=int(job.get("n", 1)), temperature=float(job.get("temperature", 0.0)),
                            max_tokens=int(job["max_tokens"]), ignore_eos=bool(job.get("ignore_eos", False)))
    started = time.monotonic()
    results = llm.generate(prompts, params, lora_request=lora_request, use_tqdm=False)
    seconds = time.monotonic() - started
    # LLM.generate returns one result per prompt, in prompt order.
    outputs = [[{"token_ids": list(c.token_ids), "text": c.text, "finish_reason": c.finish_reason}
                for c in r.outputs] for r in results]
    return {"outputs": outputs, "seconds": seconds, "vllm_version": getattr(vllm, "__version__", "?")}


def shard_bounds(count: int, ranks: int) -> list[tuple[int, int]]:
    """Contiguous shards, the first count % ranks one prompt longer (vLLM's offline data-parallel split)."""
    floor, extra = divmod(count, ranks)
    starts = [rank * floor + min(rank, extra) for rank in range(ranks + 1)]
    return list(zip(starts, starts[1:]))


def generate_data_parallel(job: dict, prompts: list[dict], dp: int, out_path: str) -> int:
    """vLLM's documented offline data parallelism: one process per DP rank, told its rank through VLLM_DP_RANK,
    VLLM_DP_RANK_LOCAL, VLLM_DP_SIZE, VLLM_DP_MASTER_IP/PORT (vLLM then gives each rank its own GPUs), each
    generating its contiguous share of the prompts; the shares are joined back in prompt order."""
    import multiprocessing

    port = free_port()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per rank: no state forked into CUDA
    procs = []
    for rank, (start, end) in enumerate(shard_bounds(len(prompts), dp)):
        # A rank with no prompt still runs one placeholder: every DP rank must take part in each forward step.
        shard = prompts[start:end] or prompts[:1]
        env = {"VLLM_DP_RANK": str(rank), "VLLM_DP_RANK_LOCAL": str(rank), "VLLM_DP_SIZE": str(dp),
               "VLLM_DP_MASTER_IP": "127.0.0.1", "VLLM_DP_MASTER_PORT": str(port)}
        proc = context.Process(target=_rank_main, args=(job, shard, env, f"{out_path}.rank{rank}"))
        proc.start()
        procs.append((proc, start, end))
    failed = _wait_all([proc for proc, _, _ in procs])
    outputs, seconds, version = [], 0.0, "?"
    for rank, (_, start, end) in enumerate(procs):
        if failed:
            break
        with open(f"{out_path}.rank{rank}", encoding="utf-8") as f:
            part = json.load(f)
        outputs.extend(part["outputs"][:end - start])  # a placeholder's output is dropped
        seconds, version = max(seconds, part["seconds"]), part["vllm_version"]
    if failed:
        print(f"vLLM data-parallel ranks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    write_json(out_path, {"outputs": outputs, "seconds": seconds, "vllm_version": version, "data_parallel_size": dp})
    return 0


def _wait_all(procs: list) -> list[str]:
    """Wait for every rank; once one fails the others are stopped (a DP rank may wait on its peers for ever)."""
    while any(p.exitcode is None for p in procs):
        if any(p.exitcode not in (None, 0) for p in procs):
            for p in procs:
                if p.exitcode is None:
                    p.terminate()
            for p in procs:
                p.join(30)
                if p.exitcode is None:
                    p.kill()
            break
        time.sleep(0.2)
    for p in procs:
        p.join()
    return [f"rank {rank} exit {p.exitcode}" for rank, p in enumerate(procs) if p.exitcode != 0]


def _rank_main(job: dict, shard: list[dict], env: dict, out_path: str) -> None:
    os.environ.update(env)
    write_json(out_path, generate(job, shard))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(path: str, record: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)  # the parent never reads a half-written file

if __name__ == "__main__":
    sys.exit(main(sys.argv))
