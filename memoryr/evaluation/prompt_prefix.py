"""The tokens every prompt of an evaluation starts with (system prompt and shots), run through the model once.

A few-shot evaluation prompt is mostly its shots: with study 2's three `arith1` exemplars, ~195 of a prompt's
~210 tokens are the same in every prompt, and pre-filling them for each row of each batch was ~3/4 of an
evaluation's time on CPU. Here they are run once per evaluation; each batch starts from copies of their KV cache
(in a static cache, as plain generation uses) followed by its rows' left-padded remainders. Every real token
keeps its position and sees the same tokens as before (the padding moves from before the shared tokens to after
them), so the arithmetic is the same up to float summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import StaticCache


@dataclass
class PromptPrefix:
    """The token ids every prompt starts with and their keys and values at each layer (one row)."""

    ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def cache(self, model: torch.nn.Module, rows: int, max_cache_len: int) -> StaticCache:
        """A static cache for `rows` rows holding the prefix, to which generation appends."""
        cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            cache.update(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1), layer)
        return cache


def prefixed_batch(tokenizer, prompts: list[str], prefix: PromptPrefix, repeat: int = 1) -> dict[str, torch.Tensor]:
    """Token ids and attention mask of prompts that start with `prefix`: the prefix, then each prompt's remainder,
    left-padded; each row `repeat` times in a row (as `generate` repeats rows for several samples)."""
    rows = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    start = len(prefix.ids)
    if any(row[:start] != prefix.ids for row in rows):
        raise ValueError("a prompt does not start with the evaluation's shared prefix")
    width = max(len(row) for row in rows) - start
    ids = [prefix.ids + [tokenizer.pad_token_id] * (width - len(row) + start) + row[start:] for row in rows]
    mask = [[1] * start + [0] * (width - len(row) + start) + [1] * (len(row) - start) for row in rows]
    return {"input_ids": torch.tensor(ids).repeat_interleave(repeat, dim=0),
            "attention_mask": torch.tensor(mask).repeat_interleave(repeat, dim=0)}


def common_prefix_length(rows: list[list[int]]) -> int:
    """How many leading tokens all rows share, leaving each row at least one token of its own to start from."""
    shortest = min(len(row) for row in rows)
    for i in range(shortest - 1):
        if any(row[i] != rows[0][i] for row in rows):
            return i
    return max(shortest - 1, 0)


def prompt_prefix(model: torch.nn.Module, rows: list[list[int]]) -> PromptPrefix | None:
    """The shared prefix of these token rows with its KV cache, or None when they share no token or the model has
    layers that keep only a sliding window of the cache (the prefix would not stay whole)."""
    length = common_prefix_length(rows)
    if length == 0 or any(kind != "full_attention" for kind in getattr(model.config, "layer_types", None) or ()):
        return None
    ids = rows[0][:length]
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True, logits_to_keep=1)
    layers = out.cache.layers
    return PromptPrefix(ids, [layer.keys for layer in layers], [layer.values for layer in layers])
