"""Answer extraction and grading on hand-written GSM8K and MATH cases, in every grading mode."""

import pytest

from memoryr.tasks.grading import extract_answer, extract_last_reasoning, extract_reasoning, grade, is_correct


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
        extract_answer("12", "fuzzy")


@pytest.mark.parametrize(
    "text, extracted, correct",
    [
        (tagged("18"), "18", True),
        (tagged("$18"), "$18", False),  # exact string match: no units, no dollar sign
        (tagged("18.0"), "18.0", False),
        ("<answer>\n5\n</answer> no: <answer>18</answer>", "18", True),  # the last <answer>
        ("<reasoning>9 + 9</reasoning>\n<answer>\n18", "18", True),  # unclosed at the cut-off: to the end
        ("18", "18", True),  # no tag at all: the whole text
        ("The answer is 18", "The answer is 18", False),
        ("<answer></answer>", "", False),
    ],
)
def test_reference_mode_is_the_reference_codes_extraction_and_exact_match(text, extracted, correct):
    assert grade(text, "18", "reference") == (extracted, correct)


@pytest.mark.parametrize(
    "text, extracted, correct",
    [
        ("so $x = \\boxed{18}$.", "18", True),
        ("first \\boxed{5}, then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", False),  # the last box, nested braces
        ("\\boxed{18 \\text{ apples}}", "18 \\text{ apples}", True),  # compared by value
        ("no box: 7 + 11 = 18", "18", True),  # else the last number, as Qwen's harness
        ("nothing", None, False),
    ],
)
def test_boxed_mode_takes_the_last_box_else_the_last_number(text, extracted, correct):
    assert grade(text, "18", "boxed") == (extracted, correct)


@pytest.mark.parametrize(
    "text, paper, reference",
    [
        ("<reasoning>\nA\n</reasoning>\n<answer>1</answer>", "A", "A"),
        ("<reasoning>A</reasoning>\n<reasoning>B</reasoning>\n<answer>1</answer>", "A", "B"),  # two blocks
        ("Intro <reasoning>B", "Intro B", "B"),  # text before an unclosed tag
        ("A</reasoning><answer>1</answer>", "A", "A"),  # pre-filled opening tag
        ("no tags", "no tags", "no tags"),
    ],
)
def test_reasoning_rules_of_paper_and_reference_mode(text, paper, reference):
    assert extract_reasoning(text) == paper
    assert extract_last_reasoning(text) == reference


@pytest.mark.parametrize("answer", ["\\$18", "\\$18.00"])
def test_latex_escaped_dollar_sign(answer):
    assert grade(tagged(answer), "18", "strict") == (answer, True)


def test_last_number_does_not_join_comma_separated_small_numbers():
    assert extract_answer("the pair is (2,5)", "last_number") == "5"
