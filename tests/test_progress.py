"""The training console's bar: which numbers it shows, from one step's logs."""

import logging
import warnings

from memoryr.training.progress import key_numbers, silence_library_deprecations


def test_the_bar_shows_reward_correctness_length_entropy_and_memory_sizes():
    logs = {"loss": 0.1, "reward": 1.35912, "rewards/correctness/mean": 0.25, "completions/mean_length": 27.125,
            "entropy": 0.17663, "memory/success_entries": 12.0, "memory/failure_entries": 40.0, "step_time": 12.4}
    assert key_numbers(logs) == {"reward": "1.36", "correct": "0.25", "len": "27.1", "entropy": "0.177",
                                 "memory": "12 ok/40 failed"}


def test_a_run_without_memories_or_correctness_shows_what_it_has():
    assert key_numbers({"reward": -0.5, "rewards/cosine/mean": -0.5, "completions/mean_length": 40.0}) == \
        {"reward": "-0.5", "len": "40"}


def test_only_the_library_deprecations_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_deprecations()
        warnings.warn("`past_key_values` is deprecated and will be removed in version 5.40.0", FutureWarning)
        warnings.warn("memoryr's own notice", FutureWarning)
    assert [str(w.message) for w in caught] == ["memoryr's own notice"]
    logger = logging.getLogger("transformers.utils.generic")
    filters = len(logger.filters)
    silence_library_deprecations()  # the CLI and train() both call it: the second adds nothing
    assert len(logger.filters) == filters
