"""Benchmarks: the registry, errors that name the way out, Hub rows (faked). The shared files: tests/integration."""

import json

import pytest

from fdd_core import benchmarks as bm
from fdd_core.store import DataFileError
from fdd_core.user_problems import question_id

ROWS = {"gsm8k-train": 7473, "gsm8k": 1319, "svamp": 1000, "asdiv": 2305, "asdiv-2215": 2215, "asdiv-pal": 2096,
        "multiarith": 600, "gsm-hard": 1319}


def test_registry_names_and_test_sets():
    assert bm.benchmark_names() == list(ROWS)
    assert bm.test_benchmarks() == [n for n in ROWS if n != "gsm8k-train"]
    assert all(bm.BENCHMARKS[n].rows == count for n, count in ROWS.items())


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(bm.BenchmarkError) as e:
        bm.load_benchmark("gsm9k")
    assert str(e.value) == ("unknown benchmark 'gsm9k'; known: gsm8k-train, gsm8k, svamp, asdiv, asdiv-2215, "
                            "asdiv-pal, "
                            "multiarith, gsm-hard")


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(bm.BenchmarkError, match="unknown source"):
        bm.load_benchmark("gsm8k", source="web", data_dir=tmp_path)  # type: ignore[arg-type]


def test_missing_local_file_names_the_path_and_the_ways_out(tmp_path):
    with pytest.raises(bm.BenchmarkError) as e:
        bm.load_benchmark("gsm8k", data_dir=tmp_path / "nowhere")
    message = str(e.value)
    assert str(tmp_path / "nowhere" / "gsm8k" / "test.jsonl") in message
    assert "FDD_DATA_DIR" in message and "source='hub'" in message


def test_local_without_any_folder_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("FDD_DATA_DIR", raising=False)
    with pytest.raises(bm.BenchmarkError, match="FDD_DATA_DIR"):
        bm.load_benchmark("svamp", source="local")


def _write(tmp_path, relpath, text):
    path = tmp_path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    good = json.dumps({"question": "Q?", "answer": "so\n#### 4"})
    path = _write(tmp_path, "gsm8k/test.jsonl", f"{good}\n{good}\n{{not json\n")
    with pytest.raises(DataFileError, match=f"{path}:3: not valid JSON"):
        bm.load_benchmark("gsm8k", data_dir=tmp_path)


@pytest.mark.parametrize(("row", "complaint"), [
    ({"question": "Q?"}, "missing field 'answer'"),
    ({"question": "Q?", "answer": "no final line"}, "bad row"),
    ({"question": "", "answer": "#### 4"}, "bad row"),
])
def test_bad_gsm8k_row_names_file_and_line(tmp_path, row, complaint):
    good = json.dumps({"question": "Q?", "answer": "#### 4"})
    path = _write(tmp_path, "gsm8k/test.jsonl", f"{good}\n\n{json.dumps(row)}\n")
    with pytest.raises(DataFileError, match=f"{path}:3: {complaint}"):
        bm.load_benchmark("gsm8k", data_dir=tmp_path)


def test_bad_svamp_item_and_duplicate_ids(tmp_path):
    item = {"ID": "chal-1", "Body": "B.", "Question": "Q?", "Answer": 3.0}
    _write(tmp_path, "svamp/SVAMP.json", json.dumps([item, {**item, "Answer": None}]))
    with pytest.raises(DataFileError, match="item 1 .*bad row"):
        bm.load_benchmark("svamp", data_dir=tmp_path)
    _write(tmp_path, "svamp/SVAMP.json", json.dumps([item, item]))
    with pytest.raises(DataFileError, match="duplicate id 'svamp-chal-1'"):
        bm.load_benchmark("svamp", data_dir=tmp_path)
    _write(tmp_path, "svamp/SVAMP.json", "[\n{\n")
    with pytest.raises(DataFileError, match="SVAMP.json:3: not valid JSON"):
        bm.load_benchmark("svamp", data_dir=tmp_path)


def test_bad_asdiv_xml(tmp_path):
    _write(tmp_path, "asdiv/ASDiv.xml", "<ProblemSet>\n<Problem ID='nluds-0001'>\n<Body>B.</Body>\n</ProblemSet>")
    with pytest.raises(DataFileError, match="ASDiv.xml:4: not valid XML"):
        bm.load_benchmark("asdiv", data_dir=tmp_path)
    _write(tmp_path, "asdiv/ASDiv.xml", "<ProblemSet><Problem ID='nluds-0001'><Body>B.</Body>"
                                        "<Question>Q?</Question></Problem></ProblemSet>")
    with pytest.raises(DataFileError, match="Problem 0 \\(ID 'nluds-0001'\\): bad row"):
        bm.load_benchmark("asdiv", data_dir=tmp_path)


# ------------------------------------------------------------------------------------- Hub-shaped rows
# Rows shaped like the Hub datasets' (see HubSource's docstring for how the fields were checked).
HUB_ROWS = {
    ("openai/gsm8k", "test"): [{"question": "Q1?", "answer": "2+2=<<2+2=4>>4\n#### 1,004"}],
    ("ChilleD/SVAMP", "train"): [{"ID": "chal-7", "Body": "Dan had $ 3 .", "Question": "How much?",
                                  "Equation": "( 1.0 + 2.0 )", "Answer": 3.0, "Type": "Addition",
                                  "question_concat": "Dan had $ 3 . How much?"}],
    ("ChilleD/SVAMP", "test"): [{"ID": "chal-2", "Body": "B.", "Question": "Q?", "Equation": "( 1.0 / 4.0 )",
                                 "Answer": 0.25, "Type": "Common-Division", "question_concat": "B. Q?"}],
    ("EleutherAI/asdiv", "validation"): [
        {"body": "Seven red apples and two green apples are in the basket.",
         "question": "How many apples are in the basket?", "solution_type": "Addition",
         "answer": "9 (apples)", "formula": "7+2=9"},
        {"body": "B.", "question": "Q?", "solution_type": "Ratio", "answer": "2:3", "formula": "2:3"}],
    ("ChilleD/MultiArith", "train"): [{"question": " A had 3 and got 4 more. How many? ", "final_ans": "7"}],
    ("ChilleD/MultiArith", "test"): [{"question": "Q?", "final_ans": "12"}],
    ("reasoning-machines/gsm-hard", "train"): [
        {"input": "Q?", "code": "def solution():\n    return 6277334000.0\n", "target": 6277334000.0}],
}


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset answered from HUB_ROWS with in-memory Datasets: nothing reaches the network."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(HUB_ROWS[(path, split)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_sources_map_to_the_same_records(fake_hub):
    gsm = bm.load_benchmark("gsm8k", source="hub").problems
    assert [(p.id, p.answer, p.source) for p in gsm] == [("gsm8k-test-0", "1004", "gsm8k")]
    assert gsm[0].solution.endswith("#### 1,004")

    svamp = bm.load_benchmark("svamp", source="hub")
    assert (svamp.origin, svamp.source) == ("hub:ChilleD/SVAMP", "hub")
    assert [(p.id, p.question, p.answer) for p in svamp.problems] == [
        ("svamp-chal-7", "Dan had $ 3 . How much?", "3"), ("svamp-chal-2", "B. Q?", "0.25")]

    asdiv = bm.load_benchmark("asdiv", source="hub").problems
    assert [(p.id, p.answer) for p in asdiv] == [("asdiv-nluds-0001", "9 (apples)"), ("asdiv-nluds-0002", "2:3")]
    assert asdiv[0].question == ("Seven red apples and two green apples are in the basket. "
                                 "How many apples are in the basket?")

    multi = bm.load_benchmark("multiarith", source="hub").problems
    assert [(p.id, p.question, p.answer) for p in multi] == [
        (question_id("multiarith", "A had 3 and got 4 more. How many?"), "A had 3 and got 4 more. How many?", "7"),
        (question_id("multiarith", "Q?"), "Q?", "12")]

    hard = bm.load_benchmark("gsm-hard", source="hub").problems
    assert [(p.id, p.answer) for p in hard] == [("gsm-hard-0", "6277334000")]
    assert hard[0].solution.startswith("def solution")

    assert fake_hub == [("openai/gsm8k", "main", "test"), ("ChilleD/SVAMP", None, "train"),
                        ("ChilleD/SVAMP", None, "test"), ("EleutherAI/asdiv", "asdiv", "validation"),
                        ("ChilleD/MultiArith", None, "train"), ("ChilleD/MultiArith", None, "test"),
                        ("reasoning-machines/gsm-hard", None, "train")]


def test_auto_goes_to_the_hub_without_a_data_folder(fake_hub, monkeypatch):
    monkeypatch.delenv("FDD_DATA_DIR", raising=False)
    assert bm.load_benchmark("gsm-hard").source == "hub"


def test_bad_hub_row_names_dataset_split_and_row(fake_hub, monkeypatch):
    monkeypatch.setitem(HUB_ROWS, ("ChilleD/MultiArith", "test"), [{"question": "Q?", "answer": "1"}])
    with pytest.raises(DataFileError, match=r"ChilleD/MultiArith \[test\] row 0: missing field 'final_ans'"):
        bm.load_benchmark("multiarith", source="hub")


def test_hub_failure_says_how_to_use_local_files(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def unreachable(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(bm.BenchmarkError, match="cannot load openai/gsm8k .*FDD_DATA_DIR"):
        bm.load_benchmark("gsm8k", source="hub")


@pytest.mark.parametrize(("mapper", "row", "answer"), [
    (bm.map_svamp, {"ID": "chal-1", "Body": "B", "Question": "Q", "Answer": "51.0"}, "51.0"),
    (bm.map_multiarith_hub, {"question": "Q", "final_ans": 39}, "39"),
    (bm.map_asdiv, {"body": "B", "question": "Q", "answer": "5 (years old); 15 (years old)"},
     "5 (years old); 15 (years old)"),
])
def test_mappers_accept_either_answer_type(mapper, row, answer):
    assert mapper(row, 0).answer == answer
