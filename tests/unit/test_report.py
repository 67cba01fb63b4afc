"""The run report: report.json's schema, the table users read, and the plot."""

import json

from fdd_core.report import text_table, write_report
from fdd_core.results import RoundRow, RoundTeacher


def rounds():
    return [
        RoundRow(round=0, train_size=900, accuracy={"synthetic-test": 0.41}, seconds=61.2,
                 teacher=RoundTeacher(requests=1600, cached=0, tokens=500_000, cost_usd=0.0)),
        RoundRow(round=1, train_size=1200, easy=300, hard=100, candidates=500, accepted=310,
                 accuracy={"synthetic-test": 0.55}, seconds=70.0,
                 teacher=RoundTeacher(requests=2000, cached=40, tokens=600_000, cost_usd=None)),
    ]


def test_report_json_has_the_documented_schema(tmp_path):
    paths = write_report(tmp_path, rounds(), {"run": {"name": "demo"}})
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"baseline", "rounds", "totals", "run_dir", "config"}
    assert report["baseline"] is None  # no base student evaluated
    # the run's spend: paid requests per row of the final set, an unknown cost stays unknown
    assert report["totals"] == {"teacher": {"requests": 3600, "cached": 40, "tokens": 1_100_000, "cost_usd": None,
                                            "saved_usd": 0.0}, "train_size": 1200, "paid_per_row": 3.0}
    first, second = report["rounds"]
    assert list(first) == ["round", "train_size", "easy", "hard", "candidates", "accepted", "teacher", "accuracy", "seconds",
                           "paid_per_row"]
    assert set(first["teacher"]) == {"requests", "cached", "tokens", "cost_usd", "saved_usd"}
    assert second["teacher"]["cost_usd"] is None  # unknown, never $0
    assert second["accuracy"]["synthetic-test"] == 0.55
    png = (tmp_path / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "![accuracy per round](accuracy.png)" in (tmp_path / "report.md").read_text()
    assert set(paths) == {"json", "plot", "markdown"}


def test_table_shows_accuracy_and_unknown_cost():
    text = text_table(rounds())
    header, first, second = text.splitlines()
    assert header.split() == ["round", "train", "easy", "hard", "candidates", "accepted", "requests", "cached",
                              "cost", "saved", "paid/row", "synthetic-test", "seconds"]
    assert "41.0%" in first and "$0.0000" in first
    assert "55.0%" in second and "unknown" in second


def test_baseline_is_the_first_row_of_table_and_report(tmp_path):
    """Issue 17: the base student before round 0 is the 'before' number every round is measured against."""
    from fdd_core.results import BaselineRow

    base = BaselineRow(model="HuggingFaceTB/SmolLM2-135M-Instruct", accuracy={"synthetic-test": 0.02}, seconds=12.34)
    write_report(tmp_path, rounds(), {}, base)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["baseline"] == {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "accuracy": {"synthetic-test": 0.02},
                                  "seconds": 12.3}
    header, first, *_ = text_table(rounds(), base).splitlines()
    assert first.split()[0] == "base" and "2.0%" in first
    assert "| base |" in (tmp_path / "report.md").read_text()


def test_nothing_usable_names_the_reasons():
    from fdd_core.results import CurationCounts

    def counts(accepted, **dropped):
        return CurationCounts(candidates=accepted + sum(dropped.values()), accepted=accepted,
                              dropped={"parse_error": 0, "wrong_answer": 0, **dropped})

    assert counts(1, parse_error=5).nothing_usable() is None
    assert counts(0, parse_error=30).nothing_usable() == "the teacher wrote nothing usable: 30 of 30 dropped as parse_error"
    assert counts(0, parse_error=20, wrong_answer=10).nothing_usable() == (
        "the teacher wrote nothing usable: 30 of 30 dropped as parse_error (20), wrong_answer (10)")


def test_the_report_can_carry_its_chart_inside_so_a_page_with_no_file_beside_it_shows_it(tmp_path):
    import base64

    from fdd_core.report import markdown, png_data_uri

    paths = write_report(tmp_path, rounds(), {})
    text = markdown(tmp_path, rounds(), image=png_data_uri(paths["plot"]))
    assert "(accuracy.png)" not in text
    uri = text.split("![accuracy per round](", 1)[1].split(")", 1)[0]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == (tmp_path / "accuracy.png").read_bytes()
    assert f"Run directory: `{tmp_path}`" in text
    # accuracy right after the round: the UI's page cuts a wide table on the right
    assert text.splitlines()[2].startswith("| round | synthetic-test | train | easy |")
    assert "| 1 | 55.0% | 1200 | 300 |" in text and text.splitlines()[2].endswith("| seconds |")


def test_a_finished_round_and_a_finished_stage_are_one_line_each_with_their_numbers():
    from fdd_core.report import round_line, stage_line
    from fdd_core.results import CurationCounts, EvalCounts, EvalResult, GenerationResult, TeacherUsage
    from fdd_core.results import TrainCounts, TrainResult

    assert round_line(rounds()[1]) == ("round 1: synthetic-test 55.0%, 1,200 training rows, 300 easy / 100 hard, "
                                       "310 of 500 candidates accepted, 2,000 paid teacher requests (unknown), "
                                       "40 from the store, 70s")
    trained = TrainResult(counts=TrainCounts(examples=900, too_long=3, steps=800, train_loss=0.9, first_loss=4.2,
                                             final_loss=0.31), seconds=95.4)
    assert stage_line(trained) == "train finished in 95s: 800 steps on 900 examples (3 too long), loss 4.2 -> 0.31"
    evaluated = EvalResult(counts=EvalCounts(accuracy={"gsm8k": 0.532}, rows={"gsm8k": 1319}), seconds=12)
    assert stage_line(evaluated) == "evaluate finished in 12s: gsm8k 53.2% of 1,319"
    generated = GenerationResult(stage="generate_variants", counts=CurationCounts(
        candidates=1594, accepted=361, dropped={"duplicate": 40, "votes_disagree": 0, "budget": 12}),
        teacher=TeacherUsage(requests=1250, cached=3, skipped_budget=12, cost_usd=0.0), seconds=61)
    assert stage_line(generated) == ("generate-variants finished in 61s: 361 of 1,594 candidates accepted (dropped: "
                                     "40 duplicate, 12 budget); teacher 1,250 paid ($0.0000), 3 from the store, "
                                     "0 failed, 12 kept back by the budget")
