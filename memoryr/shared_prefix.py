"""Generation and per-token log-probabilities of completions, computing each distinct prompt once.

GRPO scores G completions of the same prompt, so a micro-batch repeats one prompt G times and a
plain forward/backward spends most of its work on identical prompt tokens (with a 1-shot prompt of
~260 tokens and 96-token completions, ~3/4 of the tokens). Here each distinct prompt row goes
through the model once, its KV cache is copied to the rows that share it (autograd carries the
gradient of every copy back to the one prompt pass), and only the completions are run on top.
The numbers are those of the plain forward up to float summation order; positions are counted
the same way (left padding included), so the cache continues exactly where the prompt ended.

The KV cache cannot pass through checkpointed layers, so this needs gradient checkpointing off.
Generation does the same: the G copies of a prompt are pre-filled once and decoding starts from
copies of that cache, so the sampled tokens are those of a plain `generate` with the same seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch


def _distinct_prefixes(input_ids: torch.Tensor, attention_mask: torch.Tensor, split: int):
    """The distinct rows of the first `split` columns (ids and mask), and which one each row is."""
    prefix = torch.cat([input_ids[:, :split], attention_mask[:, :split]], dim=1)
    unique, rows = torch.unique(prefix, dim=0, return_inverse=True)
    return unique[:, :split], unique[:, split:], rows


def _prefix_cache(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
    position_ids: torch.Tensor | None = None,
):
    """KV cache of the distinct prefixes, one copy per row (index_select keeps the autograd graph)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(rows)
    return cache


def shared_prefix_generate(
    generate: Callable, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs
):
    """`generate(...)` with repeated prompts pre-filled once; batches without repeats go to `generate` as they are.

    `generate` is the model's own bound `generate`; the prompt minus its last token is cached, the
    last token starts decoding. Decoding then uses a dynamic cache (the pre-filled one). Positions
    skip left padding, as `generate` counts them (the training forward counts padding too).
    """
    split = input_ids.size(1) - 1
    if split < 1 or "past_key_values" in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    ids, mask, rows = _distinct_prefixes(input_ids, attention_mask, split)
    if ids.size(0) == input_ids.size(0):
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    if kwargs.get("generation_config") is not None:
        kwargs["generation_config"] = copy.copy(kwargs["generation_config"])
        kwargs["generation_config"].cache_implementation = None
    kwargs.pop("cache_implementation", None)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        cache = _prefix_cache(model, ids, mask, rows, positions)
    return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs)


def shared_prefix_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    compute_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last `logits_to_keep` tokens of each row, shape (B, logits_to_keep).

    `model` is a causal LM patched with TRL's fused LM head (as GRPOTrainer does). The prompt is every
    column before the last `logits_to_keep`; its last token stays with the completion, because its
    logits score the first completion token.
    """
    split = input_ids.size(1) - logits_to_keep - 1
    if split < 1:
        raise ValueError(f"need at least 2 prompt tokens to share a prefix, got {split + 1}")
    cache = _prefix_cache(model, *_distinct_prefixes(input_ids, attention_mask, split))
    suffix_ids = input_ids[:, split:]
    labels = suffix_ids.masked_fill(attention_mask[:, split:] == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is context, not scored
    outputs = model(
        input_ids=suffix_ids, attention_mask=attention_mask, past_key_values=cache, labels=labels, fused_lm_head=True
    )
    entropy = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
    return outputs.log_probs[:, -logits_to_keep:], entropy
