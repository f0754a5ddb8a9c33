"""Outcome rewards as TRL reward callables, chosen by name from `REWARDS`.

Every reward takes TRL's keyword arguments (`completions`, dataset columns such as `answer` and
`prefill`, ...) and returns one float per completion. Rewards read the completion's full text,
`prefill + completion`, because the pre-filled start of the assistant turn is part of the answer.
The R1 set (correctness, int, strict/soft format, XML count) follows the paper's baseline; `cosine`
is Yeo et al. (2025)'s length-scaled correctness; `reasoning_steps` is the AI-MO step-count reward.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial

from memoryr.tasks.grading import extract_answer, is_correct

RewardFn = Callable[..., list[float]]

_STRICT_FORMAT = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n?$", re.DOTALL)
_SOFT_FORMAT = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
_STEP = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", re.MULTILINE)
_INTEGER = re.compile(r"-?\d+")


def full_texts(completions: list, prefill: list[str] | None = None) -> list[str]:
    """The text each completion stands for: pre-fill plus completion (chat completions: last message)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    if prefill is None:
        return texts
    return [p + t for p, t in zip(prefill, texts, strict=True)]


def correctness(completions: list, answer: list[str], prefill=None, grading: str = "strict", **kwargs) -> list[float]:
    """1.0 when the extracted answer equals the gold answer, else 0.0."""
    texts = full_texts(completions, prefill)
    return [float(is_correct(extract_answer(t, grading), gold, grading)) for t, gold in zip(texts, answer, strict=True)]


def int_answer(completions: list, prefill=None, grading: str = "strict", **kwargs) -> list[float]:
    """0.5 when the extracted answer is an integer (the answer type GSM8K asks for); in `reference` grading,
    as the reference code: digits only (`str.isdigit`, so no minus sign)."""
    answers = [extract_answer(t, grading) for t in full_texts(completions, prefill)]
    is_integer = str.isdigit if grading == "reference" else _INTEGER.fullmatch
    return [0.5 if a is not None and is_integer(a) else 0.0 for a in answers]


def strict_format(completions: list, prefill=None, **kwargs) -> list[float]:
    """0.5 when the whole completion is exactly the XML format, line breaks included."""
    return [0.5 if _STRICT_FORMAT.match(t) else 0.0 for t in full_texts(completions, prefill)]


def soft_format(completions: list, prefill=None, **kwargs) -> list[float]:
    """0.5 when a reasoning block is followed by an answer block anywhere in the completion."""
    return [0.5 if _SOFT_FORMAT.search(t) else 0.0 for t in full_texts(completions, prefill)]


def xml_count_score(text: str) -> float:
    """0.125 per tag written exactly once, minus 0.001 per non-space character after </answer>.

    The R1 reference code measures the trailing text with splits that, when the completion ends
    right at "</answer>" without a newline, charge the whole completion's length; we charge only
    what really follows the closing tag.
    """
    tags = ("<reasoning>\n", "\n</reasoning>\n", "\n<answer>\n", "\n</answer>")
    score = sum(0.125 for tag in tags if text.count(tag) == 1)
    if "</answer>" in text:
        score -= len(text.rsplit("</answer>", 1)[1].strip()) * 0.001
    return score


def xml_count(completions: list, prefill=None, **kwargs) -> list[float]:
    """Partial credit for each XML tag written once, in place (the R1 baseline's shaping reward)."""
    return [xml_count_score(t) for t in full_texts(completions, prefill)]


def cosine_scaled(length: int, correct: bool, max_len: int) -> float:
    """Yeo et al.'s cosine schedule: correct 1.0 (short) to 0.5 (max_len), wrong -1.0 (short) to -0.5."""
    start, end = (1.0, 0.5) if correct else (-1.0, -0.5)
    progress = min(length, max_len) / max_len
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def cosine(
    completions: list,
    answer: list[str],
    completion_ids: list[list[int]] | None = None,
    prefill=None,
    grading: str = "strict",
    max_len: int = 256,
    **kwargs,
) -> list[float]:
    """Length-scaled correctness: short right answers score most, short wrong answers least."""
    correct = correctness(completions, answer, prefill, grading)
    if completion_ids is None:
        lengths = [len(t) // 4 for t in full_texts(completions)]  # rough tokens when ids are not given
    else:
        lengths = [len(ids) for ids in completion_ids]
    return [cosine_scaled(n, c == 1.0, max_len) for n, c in zip(lengths, correct, strict=True)]


def reasoning_steps(completions: list, prefill=None, **kwargs) -> list[float]:
    """Up to 1.0 for showing three or more explicit steps (Step 1:, numbered lines, First/Next/Finally)."""
    return [min(1.0, len(_STEP.findall(t)) / 3) for t in full_texts(completions, prefill)]


REWARDS: dict[str, RewardFn] = {
    "correctness": correctness,
    "int_answer": int_answer,
    "strict_format": strict_format,
    "soft_format": soft_format,
    "xml_count": xml_count,
    "cosine": cosine,
    "reasoning_steps": reasoning_steps,
}
MEMORY_REWARDS = ("memoryr", "memoryr+")
DEFAULT_REWARDS = ["correctness", "int_answer", "strict_format", "soft_format", "xml_count"]  # the R1 set: a recipe's default
TIE_TOLERANCE = 1e-6  # a group's total rewards closer than this give |advantage| < 0.01 under TRL's std + 1e-4 scaling


def outcome_reward(name: str, grading: str = "strict", max_len: int = 256) -> RewardFn:
    """The outcome reward called `name`, bound to the run's grading mode (and max_len for cosine)."""
    if name not in REWARDS:
        known = ", ".join([*REWARDS, *MEMORY_REWARDS])
        raise ValueError(f"unknown reward {name!r}; known rewards: {known}")
    fn = REWARDS[name]
    if name in ("correctness", "int_answer"):
        fn = partial(fn, grading=grading)
    elif name == "cosine":
        fn = partial(fn, grading=grading, max_len=max_len)
    return fn
