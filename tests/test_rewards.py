"""Outcome rewards pinned to hand-computed values on hand-written completions."""

import math

import pytest

from memoryr.tasks.rewards import (
    correctness,
    cosine,
    cosine_scaled,
    int_answer,
    outcome_reward,
    reasoning_steps,
    soft_format,
    strict_format,
    xml_count,
)

PERFECT = "<reasoning>\n2+2=4\n</reasoning>\n<answer>\n4\n</answer>\n"
TRAILING = "<reasoning>\nx\n</reasoning>\n<answer>\n4\n</answer>\nabc"
EMPTY = ""
TRUNCATED = "<reasoning>\nLet me think about"
NON_ASCII = "<reasoning>\n½ of 8 is 4 — done ✓\n</reasoning>\n<answer>\n4\n</answer>"
ANSWERLESS = "<reasoning>\nso it is 4\n</reasoning>\n"
ALL = [PERFECT, TRAILING, EMPTY, TRUNCATED, NON_ASCII, ANSWERLESS]
GOLD = ["4"] * len(ALL)


def test_correctness_values():
    assert correctness(completions=ALL, answer=GOLD) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert correctness(completions=[PERFECT], answer=["5"]) == [0.0]


def test_correctness_last_number_mode_accepts_answerless():
    assert correctness(completions=[ANSWERLESS, EMPTY], answer=["4", "4"], grading="last_number") == [1.0, 0.0]


def test_int_answer_values():
    texts = ["<answer>\n-3\n</answer>", "<answer>\n4.5\n</answer>", "<answer>\n1,000\n</answer>", ANSWERLESS]
    assert int_answer(completions=texts) == [0.5, 0.0, 0.0, 0.0]


def test_strict_and_soft_format_values():
    assert strict_format(completions=ALL) == [0.5, 0.0, 0.0, 0.0, 0.5, 0.0]
    assert soft_format(completions=ALL) == [0.5, 0.5, 0.0, 0.0, 0.5, 0.0]
    # the answer block must come after the reasoning block
    assert soft_format(completions=["<answer>4</answer><reasoning>x</reasoning>"]) == [0.0]


def test_xml_count_values():
    scores = xml_count(completions=ALL)
    # PERFECT: four tags, nothing after </answer>\n
    assert scores[0] == pytest.approx(0.5)
    # TRAILING: four tags, minus 3 characters * 0.001 after </answer>
    assert scores[1] == pytest.approx(0.497)
    assert scores[2] == 0.0
    assert scores[3] == pytest.approx(0.125)  # only "<reasoning>\n"
    # NON_ASCII ends right at "</answer>" with no newline: no penalty (the reference code charged the whole length)
    assert scores[4] == pytest.approx(0.5)
    assert scores[5] == pytest.approx(0.25)


def test_prefill_is_part_of_the_graded_text():
    completion = "2+2=4\n</reasoning>\n<answer>\n4\n</answer>\n"
    kwargs = dict(completions=[completion], answer=["4"], prefill=["<reasoning>\n"])
    assert strict_format(**kwargs) == [0.5]
    assert xml_count(**kwargs) == [pytest.approx(0.5)]
    assert strict_format(completions=[completion]) == [0.0]


def test_chat_style_completions_are_read_from_the_last_message():
    assert correctness(completions=[[{"role": "assistant", "content": PERFECT}]], answer=["4"]) == [1.0]


def test_cosine_schedule_endpoints_and_midpoints():
    assert cosine_scaled(0, True, 100) == pytest.approx(1.0)
    assert cosine_scaled(100, True, 100) == pytest.approx(0.5)
    assert cosine_scaled(50, True, 100) == pytest.approx(0.75)
    assert cosine_scaled(25, True, 100) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 4)))
    assert cosine_scaled(0, False, 100) == pytest.approx(-1.0)
    assert cosine_scaled(50, False, 100) == pytest.approx(-0.75)
    assert cosine_scaled(100, False, 100) == pytest.approx(-0.5)
    assert cosine_scaled(400, False, 100) == pytest.approx(-0.5)  # beyond max_len stays at the end value


def test_cosine_reward_uses_token_lengths():
    ids = [[1] * 50, [1] * 50, [1] * 100]
    got = cosine(completions=[PERFECT, EMPTY, PERFECT], answer=["4", "4", "4"], completion_ids=ids, max_len=100)
    assert got == [pytest.approx(0.75), pytest.approx(-0.75), pytest.approx(0.5)]


def test_reasoning_steps_values():
    texts = ["Step 1: a\nStep 2: b", "First, x. Next, y. Finally, z.", "1. a\n2. b\n3. c\n4. d", "just 4"]
    assert reasoning_steps(completions=texts) == [pytest.approx(2 / 3), 1.0, 1.0, 0.0]


def test_registry_binds_grading_and_rejects_unknown_names():
    fn = outcome_reward("correctness", grading="last_number")
    assert fn(completions=[ANSWERLESS], answer=["4"]) == [1.0]
    with pytest.raises(ValueError, match="unknown reward 'corectness'.*memoryr\\+"):
        outcome_reward("corectness")


def test_reference_grading_scores_as_the_reference_code():
    texts = ["<answer>-5</answer>", "<answer>18</answer>", "<answer>$18</answer>", "18"]
    assert correctness(completions=texts, answer=["18"] * 4, grading="reference") == [0.0, 1.0, 0.0, 1.0]
    assert correctness(completions=texts, answer=["18"] * 4) == [0.0, 1.0, 1.0, 0.0]  # strict: math-verify, tag needed
    assert int_answer(completions=texts, grading="reference") == [0.0, 0.5, 0.0, 0.5]  # str.isdigit: no minus sign
    assert int_answer(completions=texts) == [0.5, 0.5, 0.0, 0.0]
