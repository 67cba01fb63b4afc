"""`fdd export`: a finished run as two Hub-ready folders, the student with its model card and the distillation set
as a Hugging Face dataset (Parquet) with its dataset card; optionally pushed to the Hub (huggingface_hub).

The student is a round's rounds/rN/student/model (plain transformers weights, LoRA already merged), checked
against its manifest before it is copied; the dataset is the training set that round trained on, each row with
its lineage: the parent problem, the round, easy/hard, the teacher model, the prompt version, the request's sample
index and the votes that confirmed it (generated problems) or the gold answer it matched (seed solutions).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from fdd_core.records import Problem
from fdd_core.store import atomic_write_text, iter_jsonl

DATA_FILE = "data/train-00000-of-00001.parquet"
_VOTES = re.compile(r"^(\d+)/(\d+) votes agree")


class ExportError(ValueError):
    """A run that cannot be exported as asked; str() is one line naming what is missing."""


@dataclass
class Exported:
    model_dir: Path
    dataset_dir: Path
    round: int
    rows: int


def pick_round(run_dir: Path, which: str = "best") -> int:
    """The round to export: 'last', 'best' (highest accuracy on the primary benchmark, the first listed; the
    earlier round on a tie) or a round number; read from the run's report.json."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise ExportError(f"{run_dir}: no report.json (the run has not finished); run `fdd run` with its config first")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    rounds = {row["round"]: row for row in report["rounds"]}
    if not rounds:
        raise ExportError(f"{report_path}: no finished round")
    if which == "last":
        return max(rounds)
    if which == "best":
        primary = report["config"]["data"]["benchmarks"][0]
        return max(sorted(rounds), key=lambda r: rounds[r]["accuracy"].get(primary, 0.0))
    if not which.isdigit() or int(which) not in rounds:
        raise ExportError(f"--round: expected best, last or a finished round ({', '.join(map(str, sorted(rounds)))}), "
                          f"got {which!r}")
    return int(which)


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best") -> Exported:
    """Write out_dir/model (weights, tokenizer, README.md model card) and out_dir/dataset (Parquet, README.md)."""
    from fdd_core.student.checkpoint import MODEL_MANIFEST, check_model

    run_dir, out_dir = Path(run_dir).expanduser().resolve(), Path(out_dir).expanduser()
    if not run_dir.is_dir():
        raise ExportError(f"run not found: {run_dir}")
    r = pick_round(run_dir, which)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    config = report["config"]
    model = run_dir / "rounds" / f"r{r}" / "student" / "model"
    train = run_dir / "rounds" / f"r{r}" / "training_set" / "train.jsonl"
    for path in (model, train):
        if not path.exists():
            raise ExportError(f"round {r} of {run_dir}: {path} is missing")
    check_model(model)  # a damaged weight file is named, never published
    rows = lineage_rows(run_dir, train)
    model_dir, dataset_dir = out_dir / "model", out_dir / "dataset"
    for folder in (model_dir, dataset_dir):
        if folder.exists():
            shutil.rmtree(folder)
    shutil.copytree(model, model_dir, ignore=shutil.ignore_patterns(MODEL_MANIFEST))
    _write_parquet(rows, dataset_dir / DATA_FILE)
    evaluation = _evaluation(run_dir, r, config["data"]["benchmarks"])
    atomic_write_text(model_dir / "README.md", model_card(config, report, r, evaluation, rows))
    atomic_write_text(dataset_dir / "README.md", dataset_card(config, r, rows))
    return Exported(model_dir, dataset_dir, r, len(rows))


def lineage_rows(run_dir: Path, train: Path) -> list[dict]:
    """The training set's rows with their lineage, from the run's stage outputs (candidates and decisions)."""
    candidates, decisions, questions = {}, {}, {}
    for _, row in iter_jsonl(run_dir / "data" / "seed.jsonl"):
        questions[row["id"]] = Problem.model_validate(row).question
    for stage in sorted(run_dir.glob("rounds/r*/*/decisions.jsonl")):
        for _, row in iter_jsonl(stage):
            decisions[row["candidate_id"]] = row
        for _, row in iter_jsonl(stage.parent / "candidates.jsonl"):
            candidates[row["id"]] = row
            questions.setdefault(row["id"], row["question"])
    rows = []
    for _, ex in iter_jsonl(train):
        cand, dec = candidates.get(ex["id"], {}), decisions.get(ex["id"], {})
        votes = _VOTES.match(dec.get("detail") or "")
        generated = cand.get("kind") in ("harder", "similar")
        rows.append({
            "id": ex["id"], "question": ex["question"], "program": ex["program"], "answer": ex["answer"],
            "source": ex["source"], "kind": cand.get("kind"), "round": ex.get("round", 0),
            "split": ex.get("split", "seed"), "parent_id": ex.get("parent_id"),
            "parent_question": questions.get(ex.get("parent_id") or ""),
            "teacher_model": ex.get("teacher_model"), "prompt": ex.get("prompt"),
            "sample_index": cand.get("sample_index"),
            "verified_by": ("votes" if generated else "gold answer") if cand else None,
            "votes_agree": int(votes.group(1)) if votes else None,
            "votes_cast": int(votes.group(2)) if votes else None,
        })
    return rows


def _write_parquet(rows: list[dict], path: Path) -> None:
    import datasets

    features = datasets.Features({
        **{k: datasets.Value("string") for k in ("id", "question", "program", "answer", "source", "kind")},
        "round": datasets.Value("int32"),
        **{k: datasets.Value("string") for k in ("split", "parent_id", "parent_question", "teacher_model", "prompt")},
        "sample_index": datasets.Value("int32"),
        "verified_by": datasets.Value("string"),
        "votes_agree": datasets.Value("int32"), "votes_cast": datasets.Value("int32"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp))
    tmp.replace(path)


def _evaluation(run_dir: Path, r: int, benchmarks: list[str]) -> dict[str, dict]:
    path = run_dir / "rounds" / f"r{r}" / "eval" / "eval.json"
    found = json.loads(path.read_text(encoding="utf-8"))["benchmarks"] if path.is_file() else {}
    return {name: found[name] for name in benchmarks if name in found}


def _card(metadata: dict, license_note: str, body: str) -> str:
    # license left for the user: the base model's, the teacher's terms and the seed data's license all bear on it
    head = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{head}# license: fill in before publishing ({license_note})\n---\n\n{body}"


def model_card(config: dict, report: dict, r: int, evaluation: dict[str, dict], rows: list[dict]) -> str:
    student, teacher = config["student"]["model"], config["teacher"]["model"]
    base = None if student == "from_config" else student
    results = [{
        "task": {"type": "text-generation", "name": "math word problems (program of thought)"},
        "dataset": {"name": name, "type": name},
        "metrics": [{"type": "accuracy", "value": round(s["accuracy"], 4), "name": "program accuracy"}]
        + [{"type": "accuracy", "value": round(v, 4), "name": f"{mode} answer accuracy"}
           for mode, v in s.get("answer_accuracy", {}).items()],
    } for name, s in evaluation.items()]
    metadata = {
        **({"base_model": base} if base else {}),
        "library_name": "transformers", "pipeline_tag": "text-generation",
        "tags": ["fdd", "feedback-driven-distillation", "math", "program-of-thought"],
        "model-index": [{"name": f"fdd-{config['run']['name']}-r{r}", "results": results}],
    }
    lines = [f"# FDD student: {config['run']['name']}, round {r}", "",
             "A student fine-tuned by Feedback-Driven Distillation (Zhu et al. 2024, arXiv 2411.14698) to answer a "
             "math word problem with a Python program whose result is the answer.", "",
             f"- Base model: {base or 'a tiny model built from config (random initial weights)'}",
             f"- Teacher: {teacher}",
             f"- Distillation set: {len(rows)} rows ({_count(rows, 'split')}), seed set {config['data']['seed_set']}",
             f"- Training: {config['training']['method']}, round {r} of {len(report['rounds'])} finished", "",
             "## Evaluation", "",
             "Program accuracy: the student's program runs in a sandbox and its result must equal the gold answer "
             "within PAL's rule (|pred - gold| below 1e-3). Strict answer accuracy reads only '#### N' or 'The answer "
             "is N' from the generated text; flexible reads its last number.", "",
             "| benchmark | rows | program accuracy | strict | flexible |", "|---|---:|---:|---:|---:|"]
    for name, s in evaluation.items():
        aa = s.get("answer_accuracy", {})
        lines.append(f"| {name} | {s['rows']} | {s['accuracy']:.1%} | "
                     f"{_pct(aa.get('strict'))} | {_pct(aa.get('flexible'))} |")
    lines += ["", "## Accuracy by round", "", "| round | train rows | " + " | ".join(evaluation) + " |",
              "|---|---:|" + "---:|" * len(evaluation)]
    for row in report["rounds"]:
        lines.append(f"| {row['round']} | {row['train_size']} | "
                     + " | ".join(_pct(row["accuracy"].get(n)) for n in evaluation) + " |")
    lines += ["", "## FDD config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
    return _card(metadata, "the base model's license and the teacher's terms of use apply", "\n".join(lines))


def dataset_card(config: dict, r: int, rows: list[dict]) -> str:
    metadata = {
        "task_categories": ["text-generation"], "tags": ["fdd", "math", "program-of-thought", "synthetic"],
        "size_categories": [_size_category(len(rows))],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
    }
    body = "\n".join([
        f"# FDD distillation set: {config['run']['name']}, round {r}", "",
        f"{len(rows)} question -> program rows written by the teacher {config['teacher']['model']} and kept when the "
        "program ran and matched the gold answer (seed problems) or independent teacher solutions (generated "
        f"problems). Rows by split: {_count(rows, 'split')}; by kind: {_count(rows, 'kind')}.", "",
        "Columns: id, question, program, answer, source; lineage: kind (solve, harder, similar), round, split "
        "(seed, easy, hard: the parent's feedback split), parent_id and parent_question (the problem it was "
        "written from), teacher_model, prompt (name and version), sample_index, verified_by, votes_agree and "
        "votes_cast (generated problems: how many independent teacher solutions agreed).", "",
        f"Seed set: {config['data']['seed_set']}. Generated problems were decontaminated against "
        f"{', '.join(config['data']['benchmarks'])} ({config['curation']['decontamination_ngram']}-gram overlap "
        "after replacing names and numbers).", ""])
    return _card(metadata, "the seed data's license and the teacher's terms of use apply", body)


def _count(rows: list[dict], key: str) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row[key])] = counts.get(str(row[key]), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def push_to_hub(exported: Exported, repo: str, *, private: bool = False) -> dict[str, str]:
    """The model to `repo` and the dataset to `repo`-data (a dataset repo), each created if needed, in one commit
    each; the token comes from the environment (HF_TOKEN) or huggingface_hub's login, never from config."""
    from huggingface_hub import HfApi

    api = HfApi()
    urls = {}
    for kind, repo_id, folder in (("model", repo, exported.model_dir),
                                  ("dataset", f"{repo}-data", exported.dataset_dir)):
        api.create_repo(repo_id, repo_type=kind, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type=kind, folder_path=str(folder),
                                 commit_message=f"FDD export: round {exported.round}")
        urls[kind] = str(getattr(info, "commit_url", info))
    return urls
