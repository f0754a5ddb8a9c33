"""Generation and per-token log-probabilities of completions, computing each distinct prompt once.

GRPO scores G completions of the same prompt, so a micro-batch repeats one prompt G times and a
plain forward/backward spends most of its work on identical prompt tokens (with a 1-shot prompt of
~260 tokens and 96-token completions, ~3/4 of the tokens). Here each distinct prompt row goes
through the model once, its KV cache is copied to the rows that share it (autograd carries the
gradient of every copy back to the one prompt pass), and only the completions are run on top.
The numbers are those of the plain forward up to float summation order; positions are counted
the same way (left padding included), so the cache continues exactly where the prompt ended.

With gradient accumulation, `StepPrompts` goes further: a prompt shared by the micro-batches of
one optimizer step is run forward once per step, not once per micro-batch, and its backward runs
once, with the gradient all micro-batches sent to its KV cache.

The KV cache cannot pass through checkpointed layers, so this needs gradient checkpointing off.
Generation does the same: the G copies of a prompt are pre-filled once and decoding starts from
copies of that cache, so the sampled tokens are those of a plain `generate` with the same seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import DynamicCache, StaticCache


def _distinct_prefixes(input_ids: torch.Tensor, attention_mask: torch.Tensor, split: int):
    """The distinct rows of the first `split` columns (ids and mask), and which one each row is."""
    prefix = torch.cat([input_ids[:, :split], attention_mask[:, :split]], dim=1)
    unique, rows = torch.unique(prefix, dim=0, return_inverse=True)
    return unique[:, :split], unique[:, split:], rows


def _prefix_cache(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
    position_ids: torch.Tensor | None = None, cache: StaticCache | None = None,
):
    """KV cache of the distinct prefixes (in `cache` if given, else a new dynamic one), one copy per row
    (index_select keeps the autograd graph)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(rows)
    return cache


class StepPrompts:
    """The prompt passes of one optimizer step, shared by all its micro-batches.

    Each distinct prompt runs forward once (with gradients); every micro-batch reads detached
    copies of its KV cache, which collect that micro-batch's gradient, and `backward()` (after the
    step's last micro-batch, before clipping) sends the collected gradient through the one prompt
    pass. The gradient equals the per-micro-batch one up to float summation order.
    """

    def __init__(self) -> None:
        self._prompts: dict[tuple[bytes, bytes], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def cache(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> DynamicCache:
        """A KV cache of the distinct prefixes `ids`/`mask` (running those not seen this step), one copy per row."""
        keys = [(i.numpy().tobytes(), m.numpy().tobytes()) for i, m in zip(ids.cpu(), mask.cpu())]
        missing = [j for j, key in enumerate(keys) if key not in self._prompts]
        if missing:
            out = model(input_ids=ids[missing], attention_mask=mask[missing], use_cache=True, logits_to_keep=1)
            for row, j in enumerate(missing):
                states = [t[row:row + 1] for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
                # states that depend on no trainable weight (keys under LoRA on q/v only) collect no gradient
                self._prompts[keys[j]] = (states, [t.detach().requires_grad_(t.requires_grad) for t in states])
        leaves = [self._prompts[key][1] for key in keys]
        cache = DynamicCache(config=model.config)
        for layer in range(len(leaves[0]) // 2):
            k, v = (torch.cat([prompt[2 * layer + i] for prompt in leaves]).index_select(0, rows) for i in (0, 1))
            cache.update(k, v, layer)
        return cache

    def backward(self) -> None:
        """Back-propagate the gradient the micro-batches sent to each prompt's cache, then forget the step."""
        states, grads = [], []
        for outputs, leaves in self._prompts.values():
            for output, leaf in zip(outputs, leaves):
                if leaf.grad is not None:
                    states.append(output)
                    grads.append(leaf.grad)
        self._prompts.clear()
        if states:
            torch.autograd.backward(states, grads)


def shared_prefix_generate(
    generate: Callable, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs
):
    """`generate(...)` with repeated prompts pre-filled once; batches without repeats go to `generate` as they are.

    `generate` is the model's own bound `generate`; the prompt minus its last token is cached, the
    last token starts decoding, from the pre-filled cache: static when the generation config asks for
    one (and knows max_new_tokens), else dynamic. Positions skip left padding, as `generate` counts
    them (the training forward counts padding too).
    """
    split = input_ids.size(1) - 1
    if split < 1 or "past_key_values" in kwargs or "cache" in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    ids, mask, rows = _distinct_prefixes(input_ids, attention_mask, split)
    if ids.size(0) == input_ids.size(0):
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    config = kwargs.get("generation_config") or model.generation_config
    max_new_tokens = kwargs.get("max_new_tokens", config.max_new_tokens)
    static = kwargs.pop("cache_implementation", config.cache_implementation) == "static" and max_new_tokens is not None
    if kwargs.get("generation_config") is not None:
        kwargs["generation_config"] = copy.copy(kwargs["generation_config"])
        kwargs["generation_config"].cache_implementation = None
    # a static cache (written in place) decodes faster on CPU than a dynamic one (concatenated every token)
    cache = StaticCache(config=model.config, max_cache_len=input_ids.size(1) + max_new_tokens) if static else None
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        cache = _prefix_cache(model, ids, mask, rows, positions, cache)
    return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs)


def shared_prefix_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    compute_entropy: bool = False,
    step_prompts: StepPrompts | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last `logits_to_keep` tokens of each row, shape (B, logits_to_keep).

    `model` is a causal LM patched with TRL's fused LM head (as GRPOTrainer does). The prompt is every
    column before the last `logits_to_keep`; its last token stays with the completion, because its
    logits score the first completion token. With `step_prompts`, prompts already run this optimizer
    step are reused (see `StepPrompts`). Positions past every row's completion come back as 0.
    """
    split = input_ids.size(1) - logits_to_keep - 1
    if split < 1:
        raise ValueError(f"need at least 2 prompt tokens to share a prefix, got {split + 1}")
    ids, mask, rows = _distinct_prefixes(input_ids, attention_mask, split)
    cache = step_prompts.cache(model, ids, mask, rows) if step_prompts is not None else _prefix_cache(model, ids, mask, rows)
    # completions are padded to the longest of the whole generation batch: columns that are padding
    # in every row of this micro-batch are not run (causal attention: they change nothing before them)
    filled = attention_mask[:, split + 1:].any(dim=0).nonzero()
    keep = int(filled[-1]) + 1 if len(filled) else 1
    suffix_ids, suffix_mask = input_ids[:, split:split + 1 + keep], attention_mask[:, :split + 1 + keep]
    labels = suffix_ids.masked_fill(suffix_mask[:, split:] == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is context, not scored
    outputs = model(
        input_ids=suffix_ids, attention_mask=suffix_mask, past_key_values=cache, labels=labels, fused_lm_head=True
    )
    pad = (0, logits_to_keep - keep)  # back to the batch's width, zeros where nothing was run
    entropy = F.pad(outputs.entropy[:, -keep:], pad) if compute_entropy else None
    return F.pad(outputs.log_probs[:, -keep:], pad), entropy
