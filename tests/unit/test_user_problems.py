"""The user's own problems (issue 18): seeds and benchmarks from JSONL, CSV or Parquet files through a column
mapping, one-line errors naming the file, row and column, and the config keys that name them."""

import json

import pytest

from fdd_core.config import ProblemColumns, UserBenchmark
from fdd_core.config_files import ConfigError, load_config
from fdd_core.run_data import check_run_values, prepare_data
from fdd_core.store import DataFileError, read_jsonl
from fdd_core.user_problems import load_user_problems, question_id

ROWS = [
    {"problem": "A baker has 12 rolls and bakes 30 more. How many rolls now?", "final": 42, "why": "ans = 12 + 30"},
    {"problem": "Ana reads 7 pages a day for 3 days. How many pages?", "final": "21", "why": "ans = 7 * 3"},
    {"problem": "A tank holds 1,500 litres and loses 250. How much is left?", "final": "1,250", "why": None},
]
COLS = ProblemColumns(question="problem", answer="final", solution="why")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path, rows):
    import csv

    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _parquet(path, rows):
    import datasets

    datasets.Dataset.from_list([{k: (str(v) if v is not None else None) for k, v in r.items()} for r in rows]
                               ).to_parquet(str(path))
    return path


@pytest.mark.parametrize("write,suffix", [(_jsonl, "jsonl"), (_csv, "csv"), (_parquet, "parquet")])
def test_each_format_reads_the_same_problems_with_ids_from_the_question(tmp_path, write, suffix):
    path = write(tmp_path / f"mine.{suffix}", ROWS)
    problems = load_user_problems(str(path), COLS)
    assert [(p.question, p.answer, p.solution) for p in problems] == [
        (ROWS[0]["problem"], "42", "ans = 12 + 30"), (ROWS[1]["problem"], "21", "ans = 7 * 3"),
        (ROWS[2]["problem"], "1250", None)]
    assert {p.source for p in problems} == {"mine"}
    # the id is the question's, whatever the format or position: the same problem has the same id everywhere
    assert problems[1].id == question_id("mine", "Ana reads 7 pages   a day for 3 days. How many pages?")
    again = load_user_problems(str(write(tmp_path / f"again.{suffix}", ROWS[::-1])), COLS, name="mine")
    assert {p.id for p in again} == {p.id for p in problems}
    assert len(load_user_problems(str(path), COLS, limit=2)) == 2


def test_a_worked_solution_answer_gives_its_final_number(tmp_path):
    path = _jsonl(tmp_path / "gsm.jsonl", [{"question": "Q?", "answer": "3 + 4 = 7\n#### 7", "id": 17}])
    [p] = load_user_problems(str(path), ProblemColumns(id="id"), name="g")
    assert (p.id, p.answer) == ("g-17", "7")


def test_a_missing_column_names_the_file_row_and_the_columns_there(tmp_path):
    path = _csv(tmp_path / "b.csv", [{"Question": "Q?", "Answer": 1}])
    with pytest.raises(DataFileError) as e:
        load_user_problems(str(path), ProblemColumns())
    assert str(e.value) == (f"{path}: row 1 (line 2): no column 'question' (the question column); "
                            "columns: Question, Answer")


@pytest.mark.parametrize("bad", ["seven", None, "", float("nan")])
def test_an_unreadable_answer_names_the_row_and_column(tmp_path, bad):
    rows = [{"q": "One?", "a": 1}, {"q": "Two?", "a": bad}]
    path = _jsonl(tmp_path / "b.jsonl", rows) if bad == bad else _parquet(tmp_path / "b.parquet", rows)
    with pytest.raises(DataFileError) as e:
        load_user_problems(str(path), ProblemColumns(question="q", answer="a"))
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "row 2" in message and "column 'a' (answer)" in message


def test_a_repeated_question_is_named_with_both_rows(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": "Q?", "answer": 1}, {"question": "Q?", "answer": 1}])
    with pytest.raises(DataFileError, match=r"d.jsonl:2 \(row 2\): duplicate problem id .* first at .*d.jsonl:1"):
        load_user_problems(str(path), ProblemColumns())


def _user_cfg(tmp_path, *extra):
    seeds = _jsonl(tmp_path / "seeds.jsonl", ROWS)
    bench = _csv(tmp_path / "bench.csv", [{"Q": "How many legs do 3 cats have?", "A": 12}])
    return load_config(None, [f"data.seed_set={seeds}", "data.seed_columns.question=problem",
                              "data.seed_columns.answer=final", f"data.user_benchmarks.mine.path={bench}",
                              "data.user_benchmarks.mine.question=Q", "data.user_benchmarks.mine.answer=A",
                              "data.benchmarks=[mine]", *extra])


def test_a_user_seed_file_and_benchmark_become_the_runs_data(tmp_path):
    result = prepare_data(_user_cfg(tmp_path, "data.n_seed=2"), tmp_path / "data")
    assert result.counts.rows == {"seed": 2, "mine": 1}
    assert [r["answer"] for r in read_jsonl(result.outputs["seed"])] == ["42", "21"]
    [item] = read_jsonl(result.outputs["mine"])
    assert item["id"] == question_id("mine", "How many legs do 3 cats have?") and item["answer"] == "12"


def test_the_config_names_a_bad_user_file_before_anything_is_written(tmp_path):
    cfg = _user_cfg(tmp_path, "data.user_benchmarks.mine.answer=Answer")
    with pytest.raises(ConfigError) as e:
        prepare_data(cfg, tmp_path / "data")
    assert str(e.value) == (f"data.user_benchmarks.mine: {tmp_path / 'bench.csv'}: row 1 (line 2): no column "
                            "'Answer' (the answer column); columns: Q, A")
    assert not (tmp_path / "data").exists()
    for sets, line in [
        (["data.seed_set=nope.txt"], "data.seed_set: 'nope.txt' is neither synthetic, gsm8k-train, a .jsonl, .csv "
                                     "or .parquet file, nor hub:owner/name"),
        ([f"data.seed_set={tmp_path / 'gone.jsonl'}"], f"data.seed_set: file not found: {tmp_path / 'gone.jsonl'}"),
        (["data.seed_set=hub:just-a-name"], "data.seed_set: expected hub:owner/name, got 'hub:just-a-name'"),
        (["data.user_benchmarks.gsm8k.path=x.csv"],
         "data.user_benchmarks.gsm8k: 'gsm8k' is a built-in benchmark's name; choose another"),
        (["data.benchmarks=[mine, theirs]"], "data.benchmarks: unknown benchmark 'theirs'; known: synthetic-test, "
                                             "gsm8k-train, gsm8k, svamp, asdiv, asdiv-2215, asdiv-pal, multiarith, "
                                             "gsm-hard, mine"),
    ]:
        with pytest.raises(ConfigError) as e:
            check_run_values(_user_cfg(tmp_path, *sets))
        assert str(e.value) == line


def test_user_benchmark_keys_are_checked_like_any_other(tmp_path):
    with pytest.raises(ConfigError, match=r"--set data.user_benchmarks.mine.questoin=Q: "
                                          r"data.user_benchmarks.mine.questoin: unknown key \(did you mean "
                                          r"'data.user_benchmarks.mine.question'\?\)"):
        load_config(None, ["data.user_benchmarks.mine.questoin=Q"])
    profile = tmp_path / "p.yaml"
    profile.write_text("data:\n  user_benchmarks:\n    mine:\n      path: hub:me/probs\n      split: validation\n"
                       "  benchmarks: [mine]\n")
    cfg = load_config(profile)
    assert cfg.data.user_benchmarks == {"mine": UserBenchmark(path="hub:me/probs", split="validation")}
    check_run_values(cfg)  # a Hub dataset is only checked for its form here; the data stage loads it


def test_the_readmes_worked_example_reads_its_files(monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    cfg = load_config("examples/my_problems.yaml")
    check_run_values(cfg)  # both files read: columns present, every answer a number
    from fdd_core.run_data import seed_problems, user_benchmark_problems

    assert [p.answer for p in seed_problems(cfg)] == ["42", "336", "50", "36", "11", "468", "75", "72"]
    assert [p.answer for p in user_benchmark_problems(cfg, "exam")] == ["135", "29", "2", "14000"]
