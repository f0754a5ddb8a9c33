"""Answer extraction and grading on hand-written GSM8K and MATH cases, in both grading modes."""

import pytest

from memoryr.grading import extract_answer, grade, is_correct


def tagged(answer: str) -> str:
    return f"<reasoning>\nwork\n</reasoning>\n<answer>\n{answer}\n</answer>"


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("1,234", "1234"),  # thousands commas
        ("1,000,000", "1000000"),
        ("$1,234.00", "1234"),  # dollar sign, cents
        ("$18", "18"),
        ("18 dollars", "18"),  # units
        ("18 apples", "18"),
        ("5 \\text{ cm}", "5"),
        ("18.", "18"),  # trailing period
        ("The answer is 18.", "18"),
        ("18.0", "18"),
        ("10%", "10"),
    ],
)
def test_gsm8k_numbers_match(answer, gold):
    assert grade(tagged(answer), gold, "strict") == (answer, True)


@pytest.mark.parametrize("answer, gold", [("180", "18"), ("1,235", "1234"), ("-3", "3"), ("3", "-3"), ("7", "8")])
def test_gsm8k_wrong_numbers_are_wrong(answer, gold):
    assert grade(tagged(answer), gold, "strict") == (answer, False)


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("1/2", "\\frac12"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac34", "0.75"),
        ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("[1, 3)", "[1,3)"),
        ("(-\\infty, 2]", "(-\\infty,2]"),
        ("[2, 5]", "[2,5]"),
    ],
)
def test_math_latex_answers_match(answer, gold):
    assert grade(tagged(answer), gold, "strict") == (answer, True)


@pytest.mark.parametrize("answer, gold", [("(1,3)", "[1,3)"), ("[2, 5)", "[2,5]"), ("\\frac{1}{3}", "\\frac{1}{2}")])
def test_math_different_intervals_and_fractions_are_wrong(answer, gold):
    assert grade(tagged(answer), gold, "strict") == (answer, False)


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 12",  # no tag at all
        "<answer>12",  # unclosed tag
        "<reasoning>12</reasoning>",
        "reasoning \\boxed{12}",  # boxed is not the required format
        "<ANSWER>12</ANSWER>",
    ],
)
def test_strict_mode_needs_a_closed_answer_tag(text):
    assert extract_answer(text, "strict") is None
    assert grade(text, "12", "strict") == (None, False)


def test_strict_mode_takes_the_last_answer_tag():
    assert grade("<answer>5</answer> no, <answer>12</answer>", "12", "strict") == ("12", True)
    assert grade("<answer>12</answer> no, <answer>5</answer>", "12", "strict") == ("5", False)


def test_empty_answers_are_wrong():
    assert grade("<answer></answer>", "0", "strict") == ("", False)
    assert not is_correct(None, "0") and not is_correct("  ", "0")


@pytest.mark.parametrize(
    "text, extracted",
    [
        ("So the total is 1,234,567 apples.", "1234567"),
        ("It costs $3.50.", "3.50"),
        ("First 12. Then 7.", "7"),
        ("it is -4", "-4"),
        ("value .5", ".5"),
        ("<answer>12</answer> and 13", "13"),  # the last number, tags or not
        ("no digits here", None),
    ],
)
def test_last_number_mode(text, extracted):
    assert extract_answer(text, "last_number") == extracted


def test_last_number_mode_grades_without_tags_and_misses_non_numeric_answers():
    assert grade("The answer is 12", "12", "last_number") == ("12", True)
    assert grade("so we get $1,234.", "1234", "last_number") == ("1234", True)
    assert grade(tagged("\\frac{1}{2}"), "\\frac{1}{2}", "last_number") == ("2", False)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="grading mode"):
        extract_answer("12", "boxed")


@pytest.mark.parametrize("answer", ["\\$18", "\\$18.00"])
def test_latex_escaped_dollar_sign(answer):
    assert grade(tagged(answer), "18", "strict") == (answer, True)


def test_last_number_does_not_join_comma_separated_small_numbers():
    assert extract_answer("the pair is (2,5)", "last_number") == "5"
