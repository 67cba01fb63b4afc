"""Benchmarks as Problem records: GSM8K, SVAMP, ASDiv, MultiArith and GSM-Hard, from local files or the Hub.

Local files follow the layout of the shared data folder (see its README); Hub rows have other field names,
so each source has a small pure row -> Problem mapper and both end in the same records.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fdd_core.answers import answer_text
from fdd_core.records import Problem
from fdd_core.store import DataFileError, iter_jsonl
from fdd_core.user_problems import question_id

DATA_DIR_ENV = "FDD_DATA_DIR"

Row = Mapping[str, Any]
RowMapper = Callable[[Row, int], Problem]  # (row, 0-based position in the benchmark) -> Problem
LocatedRow = tuple[str, Row]  # (where the row came from, for error messages; the row)
Source = Literal["auto", "local", "hub"]


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded: unknown name, missing file, Hub failure, duplicate ids."""


# ------------------------------------------------------------------------------------------- row mappers
def _text(row: Row, key: str) -> str:
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be non-empty text, got {value!r}")
    return value.strip()


def map_gsm8k(row: Row, index: int, *, split: str, source: str) -> Problem:
    """GSM8K (local JSONL and openai/gsm8k share fields question/answer); gold = text after '####'."""
    solution = _text(row, "answer")
    if "####" not in solution:
        raise ValueError("answer has no '#### <number>' final line")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return Problem(id=f"gsm8k-{split}-{index}", question=_text(row, "question"), answer=gold,
                   source=source, solution=solution)


def svamp_question(body: str, question: str) -> str:
    """Body and Question as PAL and Qwen2.5-Math's loaders join them: a body without a final period gets one
    ("... on each pack. How much ..."), so the question reads as its own sentence."""
    return f"{body if body.endswith('.') else body + '.'} {question}"


def map_svamp(row: Row, index: int) -> Problem:
    """SVAMP (SVAMP.json and ChilleD/SVAMP share ID/Body/Question/Answer); ids use SVAMP's own ID."""
    return Problem(id=f"svamp-{_text(row, 'ID')}", question=svamp_question(_text(row, "Body"), _text(row, "Question")),
                   answer=answer_text(row["Answer"]), source="svamp")


def map_asdiv(row: Row, index: int, *, source: str = "asdiv") -> Problem:
    """ASDiv rows with EleutherAI/asdiv's fields (body/question/answer); the answer text is kept as is.

    Hub rows carry no ID. The XML's IDs are exactly nluds-0001..nluds-2305 in file order (checked on the
    local copy), and the Hub's loading script walks the same XML in order, so the position gives the ID.
    """
    problem_id = row.get("id") or f"nluds-{index + 1:04d}"
    return Problem(id=f"asdiv-{problem_id}", question=f"{_text(row, 'body')} {_text(row, 'question')}",
                   answer=_text(row, "answer"), source=source)


def map_pal(row: Row, index: int, *, source: str) -> Problem:
    """PAL-style rows {input, target[, code]}: asdiv_pal, multiarith_pal, gsm-hard (file and Hub alike)."""
    code = row.get("code")
    return Problem(id=f"{source}-{index}", question=_text(row, "input"), answer=answer_text(row["target"]),
                   source=source, solution=code.strip() if isinstance(code, str) and code.strip() else None)


def map_multiarith_hub(row: Row, index: int) -> Problem:
    """ChilleD/MultiArith rows {question, final_ans} (final_ans is a string since its 2023-05 update). The id comes
    from the question's text (see map_multiarith): ChilleD's train/test split is in another order than PAL's file."""
    question = _text(row, "question")
    return Problem(id=question_id("multiarith", question), question=question,
                   answer=answer_text(row["final_ans"]), source="multiarith")


def map_multiarith(row: Row, index: int) -> Problem:
    """PAL's multiarith file {input, target}: ids from the question's text (whitespace collapsed), so a problem
    has the same id from the local file and from the Hub; the 20 questions the benchmark holds twice get -2."""
    question = _text(row, "input")
    return Problem(id=question_id("multiarith", question), question=question, answer=answer_text(row["target"]),
                   source="multiarith")


def single_answer(problem: Problem) -> bool:
    """ASDiv rows with one answer: the 2,215-row variant of ToRA, Qwen2.5-Math and DeepSeekMath's evaluations
    drops the 90 whose answer has several parts ('5 (years old); 15 (years old)')."""
    return ";" not in problem.answer


# ------------------------------------------------------------------------------------------ file readers
def read_jsonl_rows(path: Path) -> Iterator[LocatedRow]:
    for lineno, record in iter_jsonl(path):
        yield f"{path}:{lineno}", record


def read_json_array_rows(path: Path) -> Iterator[LocatedRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataFileError(f"{path}: cannot read file ({e})") from None
    if not isinstance(data, list):
        raise DataFileError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataFileError(f"{path}: item {i}: expected a JSON object, got {type(item).__name__}")
        yield f"{path}: item {i} (ID {item.get('ID')!r})", item


def read_asdiv_xml_rows(path: Path) -> Iterator[LocatedRow]:
    """<Problem ID=..> elements as rows shaped like EleutherAI/asdiv's, plus the XML's own id."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataFileError(f"{path}:{e.position[0]}: not valid XML ({e})") from None
    except OSError as e:
        raise DataFileError(f"{path}: cannot read file ({e})") from None
    for i, el in enumerate(root.iter("Problem")):
        row = {key: el.findtext(tag) for key, tag in _ASDIV_TAGS.items()}
        yield f"{path}: Problem {i} (ID {el.get('ID')!r})", {"id": el.get("ID"), **row}


_ASDIV_TAGS = {"body": "Body", "question": "Question", "solution_type": "Solution-Type",
               "answer": "Answer", "formula": "Formula"}


# --------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the Hub. Field names and splits checked against the dataset cards and
    loaders (search tool): openai/gsm8k main {question, answer} train/test; ChilleD/SVAMP {ID, Body,
    Question, Equation, Answer: float, Type} train 700 + test 300; EleutherAI/asdiv config asdiv {body,
    question, solution_type, answer, formula} validation only (lighteval/lm-eval configs); ChilleD/MultiArith
    {question, final_ans: str} train + test; reasoning-machines/gsm-hard {input, code, target} train."""

    path: str
    config: str | None
    splits: tuple[str, ...]
    mapper: RowMapper


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    description: str
    local_path: str  # relative to the data folder
    read_local: Callable[[Path], Iterator[LocatedRow]]
    map_local: RowMapper
    hub: HubSource | None
    is_test_set: bool = True
    rows: int | None = None  # expected size of the full benchmark
    keep: Callable[[Problem], bool] | None = None  # a paper variant: the rows it keeps
    repeated_questions: bool = False  # ids come from the text and the benchmark repeats some: -2 on the repeat


_gsm8k_train = partial(map_gsm8k, split="train", source="gsm8k-train")
_gsm8k_test = partial(map_gsm8k, split="test", source="gsm8k")
_gsm_hard = partial(map_pal, source="gsm-hard")
_asdiv_2215 = partial(map_asdiv, source="asdiv-2215")  # ids as in ASDiv (nluds-NNNN): the same problem, one id
_SPECS = [
    BenchmarkSpec("gsm8k-train", "GSM8K train: 7,473 problems with worked solutions (seed data, not a test set)",
                  "gsm8k/train.jsonl", read_jsonl_rows, _gsm8k_train,
                  HubSource("openai/gsm8k", "main", ("train",), _gsm8k_train), is_test_set=False, rows=7473),
    BenchmarkSpec("gsm8k", "GSM8K test: 1,319 grade-school problems",
                  "gsm8k/test.jsonl", read_jsonl_rows, _gsm8k_test,
                  HubSource("openai/gsm8k", "main", ("test",), _gsm8k_test), rows=1319),
    # The SVAMP benchmark is all 1,000 problems; ChilleD's 700/300 split is not part of it, so join both.
    BenchmarkSpec("svamp", "SVAMP: 1,000 one-equation problems with varied wording",
                  "svamp/SVAMP.json", read_json_array_rows, map_svamp,
                  HubSource("ChilleD/SVAMP", None, ("train", "test"), map_svamp), rows=1000),
    BenchmarkSpec("asdiv", "ASDiv full: 2,305 problems from ASDiv.xml, some with non-numeric answers",
                  "asdiv/ASDiv.xml", read_asdiv_xml_rows, map_asdiv,
                  HubSource("EleutherAI/asdiv", "asdiv", ("validation",), map_asdiv), rows=2305),
    BenchmarkSpec("asdiv-2215", "ASDiv as ToRA, Qwen2.5-Math and DeepSeekMath evaluate it: the 2,215 problems of "
                  "ASDiv.xml with one answer", "asdiv/ASDiv.xml", read_asdiv_xml_rows, _asdiv_2215,
                  HubSource("EleutherAI/asdiv", "asdiv", ("validation",), _asdiv_2215), rows=2215, keep=single_answer),
    # PAL's numeric subset is not on the Hub, nor a simple filter of the full set (its texts differ in
    # whitespace and it drops non-integer answers), so it is local only.
    BenchmarkSpec("asdiv-pal", "ASDiv PAL subset: 2,096 numeric-answer problems as used by PAL-style papers",
                  "asdiv/asdiv_pal.jsonl", read_jsonl_rows, partial(map_pal, source="asdiv-pal"), None, rows=2096),
    BenchmarkSpec("multiarith", "MultiArith: 600 multi-step arithmetic problems",
                  "multiarith/multiarith_pal.jsonl", read_jsonl_rows, map_multiarith,
                  HubSource("ChilleD/MultiArith", None, ("train", "test"), map_multiarith_hub), rows=600,
                  repeated_questions=True),
    BenchmarkSpec("gsm-hard", "GSM-Hard: GSM8K test with large numbers; solution = its PAL program",
                  "gsm-hard/gsmhardv2.jsonl", read_jsonl_rows, _gsm_hard,
                  HubSource("reasoning-machines/gsm-hard", None, ("train",), _gsm_hard), rows=1319),
]
BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _SPECS}


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def test_benchmarks() -> list[str]:
    """Names of the evaluation sets (all but gsm8k-train): what generated data is decontaminated against."""
    return [name for name, spec in BENCHMARKS.items() if spec.is_test_set]


test_benchmarks.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class LoadedBenchmark:
    name: str
    problems: list[Problem]
    origin: str  # the local file or "hub:<dataset id>"
    source: Literal["local", "hub"]
    spec: BenchmarkSpec = field(repr=False)


def load_benchmark(name: str, *, source: Source = "auto", data_dir: str | os.PathLike | None = None,
                   limit: int | None = None) -> LoadedBenchmark:
    """Load a benchmark as Problems (the first `limit` only, if given).

    source="local" reads `data_dir` (else $FDD_DATA_DIR); "hub" calls datasets.load_dataset; "auto" reads
    local files when `data_dir` is given (which must then hold the file) or $FDD_DATA_DIR holds it, else Hub.
    """
    spec = get_spec(name)
    if source not in ("auto", "local", "hub"):
        raise BenchmarkError(f"unknown source {source!r}; use 'auto', 'local' or 'hub'")
    if limit is not None and limit < 0:
        raise BenchmarkError(f"limit must be >= 0, got {limit}")
    folder = Path(data_dir).expanduser() if data_dir is not None else _env_data_dir()
    path = folder / spec.local_path if folder is not None else None
    want_local = source == "local" or (source == "auto" and data_dir is not None)
    if source == "hub" or (source == "auto" and not want_local and not (path and path.is_file())):
        if spec.hub is None:
            where = (f"{path} does not exist" if path and not path.is_file() else
                     "no data folder given" if path is None else "source='hub' was asked for")
            raise BenchmarkError(f"benchmark {name!r} exists only as a local file, not on the Hub ({where}): "
                                 f"set {DATA_DIR_ENV} to the benchmark data folder or pass data_dir")
        return _load_hub(spec, limit)
    if path is None:
        raise BenchmarkError(f"no local data folder for {name!r}: pass data_dir, set {DATA_DIR_ENV}, "
                             f"or use source='hub'")
    if not path.is_file():
        raise BenchmarkError(f"benchmark file not found: {path}; set {DATA_DIR_ENV} to the folder holding "
                             f"{spec.local_path} (or pass data_dir), or use source='hub'")
    problems = map_rows(spec.read_local(path), spec.map_local, limit, keep=spec.keep,
                        repeated=spec.repeated_questions)
    return LoadedBenchmark(name, problems, str(path), "local", spec)


def _env_data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def map_rows(rows: Iterable[LocatedRow], mapper: RowMapper, limit: int | None = None, *,
             keep: Callable[[Problem], bool] | None = None, repeated: bool = False) -> list[Problem]:
    """Map located rows to Problems, numbering them by position; a bad row raises naming where it came from.
    keep: the rows a variant keeps (positions still count every row); repeated: a repeated id gets -2, -3."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for position, (where, row) in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        try:
            problem = mapper(row, position)
        except KeyError as e:
            raise DataFileError(f"{where}: missing field {e}") from None
        except (TypeError, ValueError) as e:
            raise DataFileError(f"{where}: bad row ({' '.join(str(e).split())})") from None
        if keep is not None and not keep(problem):
            continue
        if repeated and problem.id in seen:
            k = 2
            while f"{problem.id}-{k}" in seen:
                k += 1
            problem = problem.model_copy(update={"id": f"{problem.id}-{k}"})
        if problem.id in seen:
            raise DataFileError(f"{where}: duplicate id {problem.id!r} (first at {seen[problem.id]})")
        seen[problem.id] = where
        problems.append(problem)
    return problems


def _load_hub(spec: BenchmarkSpec, limit: int | None) -> LoadedBenchmark:
    assert spec.hub is not None
    hub = spec.hub
    import datasets  # heavy import: only when the Hub is used

    def rows() -> Iterator[LocatedRow]:
        for split in hub.splits:
            try:
                ds = datasets.load_dataset(hub.path, hub.config, split=split)
            except Exception as e:  # network, auth, offline mode, renamed dataset: all end here
                raise BenchmarkError(
                    f"cannot load {hub.path} ({split}) from the Hugging Face Hub: {type(e).__name__}: {e}; "
                    f"for local files set {DATA_DIR_ENV} or pass data_dir") from e
            for i, row in enumerate(ds):
                yield f"{hub.path} [{split}] row {i}", row

    problems = map_rows(rows(), hub.mapper, limit, keep=spec.keep, repeated=spec.repeated_questions)
    return LoadedBenchmark(spec.name, problems, f"hub:{hub.path}", "hub", spec)
