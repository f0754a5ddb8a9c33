"""Paired comparisons on small hand-computed cases: per-seed differences, bootstrap CIs, McNemar's exact test."""

import pytest

from memoryr.evaluation.compare import bootstrap_ci, mcnemar, seed_differences


def test_seed_differences_pair_by_shared_seeds():
    # seeds 4 and 5 each belong to one side only and are left out; differences 52-50, 49-50, 55-50
    diffs = seed_differences({1: 52.0, 2: 49.0, 3: 55.0, 4: 60.0}, {1: 50.0, 2: 50.0, 3: 50.0, 5: 10.0})
    assert diffs.seeds == [1, 2, 3] and diffs.differences == [2.0, -1.0, 5.0]
    assert diffs.mean == 2.0
    assert (diffs.wins, diffs.ties, diffs.losses) == (2, 0, 1)
    low, high = diffs.ci95
    assert -1.0 <= low < diffs.mean < high <= 5.0  # a mean of resampled differences lies within their range
    assert seed_differences({1: 52.0, 2: 49.0, 3: 55.0}, {1: 50.0, 2: 50.0, 3: 50.0}).ci95 == (low, high)  # fixed seed


def test_equal_accuracy_is_a_tie():
    diffs = seed_differences({1: 40.0, 2: 45.0}, {1: 40.0, 2: 50.0})
    assert diffs.differences == [0.0, -5.0] and diffs.mean == -2.5
    assert (diffs.wins, diffs.ties, diffs.losses) == (0, 1, 1)


def test_one_or_no_shared_seed():
    one = seed_differences({1: 30.0}, {1: 20.0, 2: 25.0})
    assert one.differences == [10.0] and one.mean == 10.0 and one.ci95 is None
    none = seed_differences({1: 30.0}, {2: 20.0})
    assert none.seeds == [] and none.mean is None and none.ci95 is None
    assert (none.wins, none.ties, none.losses) == (0, 0, 0)


def test_bootstrap_ci_cases_with_known_answers():
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)  # every resample has mean 3
    # two values: a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so the 2.5th and
    # 97.5th percentiles of 10000 resampled means are 0 and 1
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([7.0]) is None


def test_mcnemar_pools_the_discordant_problems_of_shared_seeds():
    method = {1: [True, True, True, False, False], 2: [True, True, True, False], 3: [True]}
    baseline = {1: [False, False, True, True, False], 2: [False, False, False, False]}
    # seed 1: baseline-only right at problem 3 (b = 1), method-only right at 0 and 1 (c = 2); seed 2: c = 3;
    # seed 3 has no baseline run. b = 1, c = 5: p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64
    test = mcnemar(method, baseline)
    assert (test.seeds, test.n, test.b, test.c) == ([1, 2], 9, 1, 5)
    assert test.p == pytest.approx(0.21875)


def test_mcnemar_without_discordant_problems_is_p_one():
    test = mcnemar({1: [True, False], 2: [False]}, {1: [True, False], 2: [False]})
    assert (test.n, test.b, test.c, test.p) == (3, 0, 0, 1.0)


def test_mcnemar_needs_the_same_problems_on_both_sides():
    with pytest.raises(ValueError, match="seed 2: 2 per-problem verdicts for the method but 3"):
        mcnemar({1: [True], 2: [True, False]}, {1: [False], 2: [True, False, False]})


def test_the_seed_and_problem_bootstrap_covers_the_problems_and_crosses_them_with_the_seeds():
    from memoryr.evaluation.compare import seed_problem_ci

    questions = {s: ["a", "b", "c", "d"] for s in (1, 2, 3)}
    right, wrong = [True] * 4, [False] * 4
    # the method right everywhere, the baseline wrong everywhere: +100 pp whatever is resampled
    assert seed_problem_ci({s: right for s in questions}, {s: wrong for s in questions}, questions) == (100.0, 100.0)
    # every seed +25 pp (the method alone right on problem "a"): the seed bootstrap says exactly +25, but a new
    # problem sample may hold no "a" (0) or several (up to +100)
    method = {s: [True, False, False, False] for s in questions}
    low, high = seed_problem_ci(method, {s: wrong for s in questions}, questions)
    assert low == 0.0 and 25.0 < high <= 100.0
    assert bootstrap_ci([25.0, 25.0, 25.0]) == (25.0, 25.0)
    # problems are crossed with seeds: a problem only seed 1 was scored on weighs on seed 1 alone
    questions[1] = ["a", "b", "c", "e"]
    low, high = seed_problem_ci(method, {s: wrong for s in questions}, questions)
    assert low == 0.0 and high <= 100.0
    assert seed_problem_ci({1: right}, {1: wrong}, {1: ["a", "b", "c", "d"]}) is None  # one seed: no CI
    # seeds scored on disjoint problems, each +100 pp: a seed none of whose problems a resample drew says nothing
    alone = {s: [q] for s, q in zip((1, 2, 3, 4), "abcd")}
    assert seed_problem_ci({s: [True] for s in alone}, {s: [False] for s in alone}, alone) == (100.0, 100.0)
