"""Answer extraction and grading, shared by the training rewards and evaluation.

A completion is graded in two steps: extract the answer it commits to, then compare it with the
gold answer. Modes:
  * `strict`: the content of the last closed `<answer>` tag, compared with math-verify (falling back
    to a normalised exact match when math-verify cannot parse one side); no closed tag is wrong.
  * `last_number`: the last number of the text, compared as in `strict`.
  * `reference`: the public Memory-R code's rule (utils_gsm8k.py `extract_xml_answer` and its
    correctness reward): the text after the last `<answer>`, cut at the next `</answer>`, stripped,
    must equal the gold string exactly. Every text yields an extraction (without any `<answer>`,
    the whole text), so "18 dollars" or an unclosed "<answer>18" at the cut-off are graded as written.
  * `boxed`: Qwen's evaluation harness (Qwen2.5-Math `evaluation/parser.py`): the content of the
    last `\\boxed{...}` (braces balanced), else the last number; compared as in `strict`.

Reasoning extraction (what the memory rewards embed) has two rules: `extract_reasoning` (paper
mode: the first closed block, or what part of one was written) and `extract_last_reasoning` (the
reference's `extract_xml_reasoning`: the text after the last `<reasoning>`, cut at the next
`</reasoning>`).
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

GRADING_MODES = ("strict", "last_number", "reference", "boxed")

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
        return _last_number(text)
    if mode == "reference":
        return text.split("<answer>")[-1].split("</answer>")[0].strip()
    if mode == "boxed":
        boxed = _last_boxed(text)
        return boxed.strip() if boxed is not None else _last_number(text)
    raise ValueError(f"unknown grading mode {mode!r}; choose one of {', '.join(GRADING_MODES)}")


def _last_number(text: str) -> str | None:
    """The last number of a text, thousands commas removed."""
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}`, nested braces kept; None without one (an unclosed one runs to the end)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, chars = 1, []
    for char in text[start + len("\\boxed{"):]:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            break
        chars.append(char)
    return "".join(chars)


def extract_reasoning(text: str) -> str:
    """The reasoning part of a completion: inside its <reasoning> tags, or whatever part of them it wrote."""
    match = _REASONING_RE.search(text)
    if match:
        return match.group(1).strip()
    before_close = text.split("</reasoning>", 1)[0]  # a pre-filled or truncated block lacks one tag
    return before_close.replace("<reasoning>", "", 1).strip()


def extract_last_reasoning(text: str) -> str:
    """The reference code's rule: the text after the last <reasoning>, cut at the next </reasoning>, stripped."""
    return text.split("<reasoning>")[-1].split("</reasoning>")[0].strip()


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


def is_correct(predicted: str | None, gold: str, mode: str = "strict") -> bool:
    """Whether an extracted answer equals the gold answer: the exact string in `reference` mode, else
    math-verify, then normalised exact match."""
    if mode == "reference":
        return predicted == gold
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
    return extracted, is_correct(extracted, gold, mode)
