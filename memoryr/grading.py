"""Answer extraction and grading, shared by the training rewards and evaluation.

A completion is graded in two steps: extract the answer it commits to (the content of its last
closed `<answer>` tag in `strict` mode, or its last number in `last_number` mode), then compare it
with the gold answer using math-verify, falling back to a normalised exact match when math-verify
cannot parse one side. An answer outside the required format counts as wrong.
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

GRADING_MODES = ("strict", "last_number")

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_REASONING_RE = re.compile(r"<reasoning>(.*?)</reasoning>", re.DOTALL)
# thousands separators only in groups of three ("1,234"), so "(2,5)" is two numbers
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def extract_answer(text: str, mode: str = "strict") -> str | None:
    """The answer a completion commits to, or None when it commits to none in this mode."""
    if mode == "strict":
        matches = _ANSWER_RE.findall(text)
        return matches[-1].strip() if matches else None
    if mode == "last_number":
        numbers = _NUMBER_RE.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    raise ValueError(f"unknown grading mode {mode!r}; choose one of {', '.join(GRADING_MODES)}")


def extract_reasoning(text: str) -> str:
    """The reasoning part of a completion: inside its <reasoning> tags, or whatever part of them it wrote."""
    match = _REASONING_RE.search(text)
    if match:
        return match.group(1).strip()
    before_close = text.split("</reasoning>", 1)[0]  # a pre-filled or truncated block lacks one tag
    return before_close.replace("<reasoning>", "", 1).strip()


def normalise(answer: str) -> str:
    """A canonical string for exact matching: no spaces, $, units markup, thousands commas or final period."""
    s = answer.strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", s, re.DOTALL)
    if boxed:
        s = boxed.group(1)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    s = s.replace("$", "").replace("\\!", "").replace("\\,", "")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"\s+", "", s).rstrip(".").lower()
    return s


def _math_verify(gold: str, predicted: str) -> bool | None:
    """math-verify's verdict, or None when either side does not parse."""
    on_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if on_main else None  # math-verify's timeout uses signal.alarm: main thread only
    gold_parsed = parse(gold if "$" in gold or "\\boxed" in gold else f"${gold}$", parsing_timeout=timeout)
    pred_parsed = parse(predicted, parsing_timeout=timeout)
    if not pred_parsed and "$" not in predicted:
        pred_parsed = parse(f"${predicted}$", parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return None
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def is_correct(predicted: str | None, gold: str) -> bool:
    """Whether an extracted answer equals the gold answer (math-verify, then normalised exact match)."""
    if predicted is None or not predicted.strip():
        return False
    predicted = predicted.replace("\\$", "$")  # a LaTeX-escaped dollar sign is still a dollar sign
    verdict = _math_verify(gold, predicted)
    if verdict:
        return True
    return normalise(predicted) == normalise(gold)


def grade(text: str, gold: str, mode: str = "strict") -> tuple[str | None, bool]:
    """Extract the answer from a completion's full text and grade it: (extracted, correct)."""
    extracted = extract_answer(text, mode)
    return extracted, is_correct(extracted, gold)
