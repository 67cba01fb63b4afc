"""The student's one prompt format: prompt/target/extract round trips, and labels that mask exactly the prompt."""

import pytest

from fdd_core.student.factory import train_tokenizer
from fdd_core.student.prompting import (
    IGNORE_INDEX,
    INSTRUCTION,
    adds_eos,
    build_prompt,
    build_target,
    encode_example,
    program_from_generation,
)
from fdd_core.synthetic import make_splits

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
QUESTION = "Maya has 12 marbles. She finds 5 more marbles. How many marbles does she have now?"
PROGRAM = "marbles = 12\nmarbles = marbles + 5\nans = marbles"


@pytest.fixture(scope="module")
def seeds():
    return make_splits(60, 0, seed=3)[0]


@pytest.fixture(scope="module")
def causal_tok(seeds):
    return train_tokenizer([t for p in seeds for t in (p.question, p.solution)], seq2seq=False)


@pytest.fixture(scope="module")
def seq2seq_tok(seeds):
    return train_tokenizer([t for p in seeds for t in (p.question, p.solution)], seq2seq=True)


@pytest.fixture(scope="module")
def chat_tok(seeds):
    tok = train_tokenizer([t for p in seeds for t in (p.question, p.solution)], seq2seq=False)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_plain_prompt_without_chat_template(causal_tok):
    assert build_prompt(causal_tok, f"  {QUESTION}\n") == f"Question: {QUESTION}\nProgram:\n"


def test_chat_template_prompt_asks_for_a_program(chat_tok):
    prompt = build_prompt(chat_tok, QUESTION)
    assert prompt == f"<|user|>\n{INSTRUCTION}\n\n{QUESTION}<|end|>\n<|assistant|>\n"


def test_target_ends_with_eos_for_causal_only(causal_tok, seq2seq_tok):
    assert not adds_eos(causal_tok) and adds_eos(seq2seq_tok)
    assert build_target(causal_tok, PROGRAM + "\n") == PROGRAM + causal_tok.eos_token
    assert build_target(seq2seq_tok, PROGRAM) == PROGRAM  # the tokenizer appends </s> itself
    assert build_target(causal_tok, PROGRAM, seq2seq=True) == PROGRAM


@pytest.mark.parametrize("tok_name", ["causal_tok", "seq2seq_tok", "chat_tok"])
def test_target_round_trips_through_tokens_and_extraction(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    ids = tok(build_target(tok, PROGRAM), add_special_tokens=adds_eos(tok))["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert program_from_generation(tok.decode(ids)) == PROGRAM  # raw decode keeps </s>: extraction cuts there
    assert program_from_generation(tok.decode(ids, skip_special_tokens=True)) == PROGRAM


@pytest.mark.parametrize(
    "generated",
    [
        PROGRAM,
        PROGRAM + "</s>garbage after the end",
        PROGRAM + "<|im_end|>\n<|im_start|>user",
        "\n" + PROGRAM + "\n\nQuestion: Leo has 3 apples.",
        "Here is the program:\n```python\n" + PROGRAM + "\n```\nThe answer is 17.",
        "```py\n" + PROGRAM + "\n```",
        "```\n" + PROGRAM + "\n",  # an unclosed fence (cut by max_new_tokens)
    ],
)
def test_program_from_generation(generated):
    assert program_from_generation(generated) == PROGRAM


def test_program_from_generation_of_nothing():
    assert program_from_generation("") == ""
    assert program_from_generation("</s>") == ""


@pytest.mark.parametrize("tok_name", ["causal_tok", "chat_tok"])
def test_causal_labels_mask_exactly_the_prompt(request, tok_name, seeds):
    tok = request.getfixturevalue(tok_name)
    for p in seeds[:20]:
        row = encode_example(tok, p.question, p.solution, seq2seq=False)
        prompt_ids = tok(build_prompt(tok, p.question))["input_ids"]  # as inference encodes it
        n = len(prompt_ids)
        assert row["input_ids"][:n] == prompt_ids
        assert row["labels"][:n] == [IGNORE_INDEX] * n
        assert row["labels"][n:] == row["input_ids"][n:]
        assert IGNORE_INDEX not in row["labels"][n:]
        assert row["labels"][-1] == tok.eos_token_id
        assert tok.decode(row["labels"][n:], skip_special_tokens=True) == p.solution
        assert len(row["attention_mask"]) == len(row["input_ids"])


def test_seq2seq_labels_are_the_target(seq2seq_tok, seeds):
    p = seeds[0]
    row = encode_example(seq2seq_tok, p.question, p.solution, seq2seq=True)
    assert row["input_ids"] == seq2seq_tok(build_prompt(seq2seq_tok, p.question))["input_ids"]
    assert row["labels"][-1] == seq2seq_tok.eos_token_id and row["labels"].count(seq2seq_tok.eos_token_id) == 1
    assert seq2seq_tok.decode(row["labels"], skip_special_tokens=True) == p.solution


def test_too_long_examples_are_dropped(causal_tok, seeds):
    p = seeds[0]
    full = encode_example(causal_tok, p.question, p.solution, seq2seq=False)
    n = len(full["input_ids"])
    assert encode_example(causal_tok, p.question, p.solution, seq2seq=False, max_length=n) == full
    assert encode_example(causal_tok, p.question, p.solution, seq2seq=False, max_length=n - 1) is None


def test_tiny_tokenizer_writes_unseen_numbers_and_pads_left(causal_tok):
    program = "apples = 98765\napples = apples - 4321\nans = apples"  # numbers never seen whole in training
    ids = causal_tok(program)["input_ids"]
    assert causal_tok.unk_token_id not in ids
    assert causal_tok.decode(ids) == program
    causal_tok.padding_side = "left"
    try:
        batch = causal_tok(["ans = 1", "apples = 12\nans = apples"], padding=True)
    finally:
        causal_tok.padding_side = "right"
    short, long_ = batch["input_ids"]
    assert len(short) == len(long_) and short[0] == causal_tok.pad_token_id and long_[0] != causal_tok.pad_token_id
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1
    assert {causal_tok.pad_token_id, causal_tok.eos_token_id, causal_tok.bos_token_id} == {0, 1, 3}


# ------------------------------------------------------------------------------------- one answer convention
def answer_of(program: str):
    """What the sandbox reads from a program (solution() when defined, else ans); our own trusted programs only."""
    scope: dict = {}
    exec(program, scope)  # noqa: S102  (handmade and synthetic programs of this file, never a model's)
    return scope["solution"]() if "solution" in scope else scope.get("ans")


def test_training_programs_store_the_answer_in_ans_as_the_prompt_asks(chat_tok, seeds):
    """Issue 17: the prompt asks for `ans`, half the offline teacher's programs define solution() (PAL's form) and
    the student followed. Every training target of a prompt with the instruction stores its answer in `ans`, with
    the same value."""
    from fdd_core.student.prompting import as_prompted
    from fdd_core.teacher.offline import PATH_STYLES, reasoning_path

    assert "variable named ans" in INSTRUCTION
    wrapped = 0
    for problem in seeds[:20]:
        for style in range(PATH_STYLES):
            program = reasoning_path(problem.solution, style)
            wrapped += "def solution" in program
            target = build_target(chat_tok, program, seq2seq=False)
            assert "def solution" not in target and "\nans = " in "\n" + target, target
            assert answer_of(as_prompted(program)) == answer_of(program)
    assert wrapped == 40  # half of them came as solution()


def test_the_plain_prompt_learns_the_teachers_programs_as_written(causal_tok, seq2seq_tok, seeds):
    """The plain prompt (a tokenizer without a chat template: the tiny from_config students) asks for no form: its
    targets are the teacher's programs, solution() included. Rewriting them into `ans` cost the tiny student 16
    points of held-out accuracy at round 0 (bench_method; the docstring of build_target)."""
    from fdd_core.teacher.offline import reasoning_path

    pal = reasoning_path(seeds[0].solution, 2)
    assert pal.startswith("def solution():")
    assert build_target(causal_tok, pal + "\n") == pal + causal_tok.eos_token
    assert build_target(seq2seq_tok, pal) == pal


@pytest.mark.parametrize("program", [
    "def solution():\n    if True:\n        return 2\n    return 3",  # several returns: called, not unwrapped
    "import math\ndef solution():\n    return math.sqrt(16)",
    "def solution():\n    def double(x):\n        return 2 * x\n    return double(4)",
])
def test_other_solution_functions_are_called_into_ans(program):
    from fdd_core.student.prompting import as_prompted

    normalised = as_prompted(program)
    assert normalised.endswith("\nans = solution()") and answer_of(normalised) == answer_of(program)


@pytest.mark.parametrize("program", [PROGRAM, "print(1)", "ans = (", "x = 1\nans = x\ndef solution():\n    return 9"])
def test_programs_that_set_ans_or_do_neither_are_unchanged(program):
    from fdd_core.student.prompting import as_prompted

    assert as_prompted(program) == program
