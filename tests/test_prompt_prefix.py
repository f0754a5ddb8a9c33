"""The shared start of an evaluation's prompts, run once: where it ends, how batches are laid out after it, and that
it gives the completions of plain left-padded generation."""

import json

import pytest
import torch

from memoryr.evaluation.evaluate import evaluate
from memoryr.evaluation.prompt_prefix import common_prefix_length, prefixed_batch, prompt_prefix
from memoryr.tasks.data import Problem, load_problems, parse_task_config

STUDY2_TASK = '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"], ' \
              '"allow_parentheses": false, "allow_negation": false}'


def test_the_shared_prefix_stops_where_rows_first_differ_and_leaves_every_row_a_token():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical rows: the last token starts decoding
    assert common_prefix_length([[1, 2], [1, 2, 3, 4]]) == 1
    assert common_prefix_length([[7], [7, 8]]) == 0
    assert common_prefix_length([[1, 2], [3, 4]]) == 0


class ListTokenizer:
    """Token ids are the characters' code points; pad 0."""

    pad_token_id = 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_a_batch_after_the_prefix_is_left_padded_between_it_and_each_rows_remainder():
    prefix = type("P", (), {"ids": [ord("a"), ord("b")]})()
    batch = prefixed_batch(ListTokenizer(), ["abXYZ", "abQ"], prefix, repeat=2)
    a, b, X, Y, Z, Q = (ord(c) for c in "abXYZQ")
    assert batch["input_ids"].tolist() == [[a, b, X, Y, Z]] * 2 + [[a, b, 0, 0, Q]] * 2
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1]] * 2 + [[1, 1, 0, 0, 1]] * 2
    with pytest.raises(ValueError, match="does not start with the evaluation's shared prefix"):
        prefixed_batch(ListTokenizer(), ["aXb"], prefix)


def test_the_prefix_cache_holds_each_layers_keys_for_the_shared_tokens(tiny_model_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    prefix = prompt_prefix(model, [[5, 6, 7, 8], [5, 6, 9]])
    assert prefix.ids == [5, 6] and len(prefix.keys) == model.config.num_hidden_layers
    assert prefix.keys[0].shape[:3] == (1, model.config.num_key_value_heads, 2)
    cache = prefix.cache(model, rows=3, max_cache_len=10)
    assert cache.get_seq_length() == 2 and torch.equal(cache.layers[0].keys[2, :, :2], prefix.keys[0][0])
    assert prompt_prefix(model, [[1, 2], [3, 4]]) is None


@pytest.mark.slow
def test_sharing_the_shots_gives_smollm2_the_same_completions_greedy_and_sampled(tmp_path):
    """Study 2's prompt (3 arith1 shots) on the real model: every completion equals plain left-padded generation."""
    from memoryr.evaluation.evaluate import load_for_eval
    from memoryr.models import resolve_model

    model, tokenizer = load_for_eval(resolve_model("smollm2-135m-instruct"), "transformers", 1)
    problems = load_problems("reasoning-gym:basic_arithmetic", "test", limit=15, seed=1, size=2000,
                             task_config=parse_task_config(STUDY2_TASK))
    problems.append(Problem("Calculate 12 + 345 - 6789 + 1.", "-6431"))  # a longer remainder: more padding
    settings = dict(shots=3, exemplars="arith1", prefill="<reasoning>\n", batch_size=8, max_new_tokens=32, seed=1,
                    progress=False)
    for extra in ({}, {"num_samples": 2, "temperature": 1.0}):
        files = {share: tmp_path / f"{share}-{len(extra)}.jsonl" for share in (False, True)}
        for share, path in files.items():
            evaluate(model, tokenizer, problems, sample_path=path, share_prefix=share, **settings, **extra)
        plain, shared = ([json.loads(line) for line in files[s].read_text().splitlines()] for s in (False, True))
        assert shared == plain
