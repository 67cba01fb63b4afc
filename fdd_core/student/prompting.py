"""The one prompt format of the student (question -> program), shared by training and inference.

Training encodes an example as prompt tokens (label -100) followed by target tokens (the loss), so the
model learns to continue exactly the prompt that inference later sends.
"""

from __future__ import annotations

import re
from typing import Any

INSTRUCTION = (
    "Write a Python program that solves the following math word problem. "
    "Store the final answer in a variable named ans."
)
PLAIN_PROMPT = "Question: {question}\nProgram:\n"
IGNORE_INDEX = -100

# Where a generated program ends when the model runs on past its EOS (sampling, a missed stop token):
# special tokens of the common families, a closing code fence, or the model starting a new question.
STOP_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<pad>", "\nQuestion:")
# An unclosed fence runs to the end: generation often stops inside the block. (Teacher replies are parsed
# by other rules: teacher/parsing.py: program_from_reply.)
_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer: Any, question: str) -> str:
    """The text the student continues: its chat template when it has one, else the plain format."""
    question = question.strip()
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": f"{INSTRUCTION}\n\n{question}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PLAIN_PROMPT.format(question=question)


def adds_eos(tokenizer: Any) -> bool:
    """Whether encoding text appends EOS by itself (T5-style tokenizers), so a target must not add another."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return False
    ids = tokenizer("1", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[-1] == eos


def as_prompted(program: str) -> str:
    """The program in the form INSTRUCTION (the chat-template prompt) asks for: the answer stored in `ans`.

    Teachers also write PAL's form, `def solution(): ... return x` (the sandbox accepts both). A student trained on
    both learns two conventions for one prompt, so every training target is written the one way: a solution()
    with a single final return (and no nested function) is unwrapped into straight-line code ending `ans = x`;
    any other solution() gets `ans = solution()` appended. Either way the program computes the same answer.
    A program that already sets `ans`, or does neither, is returned unchanged."""
    import ast
    import textwrap

    try:
        tree = ast.parse(program)
    except SyntaxError:
        return program
    top = tree.body
    if any(isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and "ans" in _names(n) for n in top):
        return program
    funcs = [n for n in top if isinstance(n, ast.FunctionDef) and n.name == "solution"]
    if len(funcs) != 1:
        return program
    func = funcs[0]
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    nested = [n for n in ast.walk(func) if n is not func and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                            ast.Lambda, ast.Global, ast.Nonlocal,
                                                                            ast.Yield, ast.YieldFrom))]
    last = func.body[-1]
    simple = (len(top) == 1 and not func.args.args and not func.decorator_list and not nested and len(returns) == 1
              and returns[0] is last and last.value is not None)
    if not simple:
        return program.rstrip("\n") + "\nans = solution()"
    lines = program.split("\n")
    body = textwrap.dedent("\n".join(lines[func.body[0].lineno - 1:func.end_lineno])).split("\n")
    offset = last.lineno - func.body[0].lineno
    body[offset] = body[offset].replace("return", "ans =", 1)
    return "\n".join(body).strip("\n")


def _names(node: Any) -> set[str]:
    import ast

    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def build_target(tokenizer: Any, program: str, *, seq2seq: bool | None = None) -> str:
    """The program followed by what ends it: EOS text for causal models; nothing for seq2seq (or any tokenizer that
    appends EOS itself: seq2seq=None detects that), since the tokenizer adds </s>.

    Where the prompt is INSTRUCTION in a chat template, the program is as_prompted (the answer in `ans`, as the
    prompt asks). The plain prompt asks for no form, so there it stays as the teacher wrote it: the tiny student
    learns PAL's solution() form far better than straight-line code (round 0 of the demo, 600 steps: 28.8% held-out
    with the teacher's forms, 12.2% with every target rewritten into `ans`; bench/bench_method.py)."""
    program = program.strip("\n")
    if has_chat_template(tokenizer):
        program = as_prompted(program)
    if seq2seq is None:
        seq2seq = adds_eos(tokenizer)
    if seq2seq or not getattr(tokenizer, "eos_token", None):
        return program
    return program + tokenizer.eos_token


def program_from_generation(generated: str) -> str:
    """The program in generated text: the body of the first code fence if there is one, cut at a stop marker."""
    text = generated
    cut = min((i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0), default=-1)
    fence = _FENCE_RE.search(text)
    if fence is not None and (cut < 0 or fence.start() < cut):
        text = fence.group(1)
    elif cut >= 0:
        text = text[:cut]
    return text.strip()


def encode_example(
    tokenizer: Any, question: str, program: str, *, seq2seq: bool, max_length: int | None = None
) -> dict[str, list[int]] | None:
    """Token ids of one training example, or None when it does not fit in max_length.

    Causal: input = prompt ids + target ids, labels = -100 on the prompt. The prompt is encoded alone
    with the tokenizer's default special tokens, exactly as inference encodes it (tokenizer(prompts)), and
    the target without them, so no boundary merge makes training and inference disagree.
    Seq2seq: input = prompt ids, labels = target ids (the tokenizer appends </s>).
    """
    prompt = build_prompt(tokenizer, question)
    target = build_target(tokenizer, program, seq2seq=seq2seq)
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if seq2seq:
        target_ids = tokenizer(text_target=target, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and target_ids[-1:] != [tokenizer.eos_token_id]:
            target_ids = target_ids + [tokenizer.eos_token_id]  # a tokenizer that does not append </s> itself
        if max_length is not None and max(len(prompt_ids), len(target_ids)) > max_length:
            return None
        return {"input_ids": prompt_ids, "attention_mask": [1] * len(prompt_ids), "labels": target_ids}
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    input_ids = prompt_ids + target_ids
    if max_length is not None and len(input_ids) > max_length:
        return None
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
    }
