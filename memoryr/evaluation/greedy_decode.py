"""Greedy decoding for evaluation, in which rows leave the batch once they have finished.

`generate` decodes every row of a batch until its last row ends, and copies each step's logits to float32 before
its argmax: in study 2's test evaluation 8% of the decoded row-tokens belonged to rows that had already finished.
Here each step takes the argmax of the model's logits as they are, and once a quarter of the rows still in the
batch have finished, those rows leave it and its KV cache. No row's arithmetic changes: the model is called with
the inputs `generate` gives it (positions counted over the left padding, the same masks), attention is computed
row by row, and a matrix product gives a row the same result for any number of rows from 4 up (measured with
torch 2.13's CPU kernels; 1-3 rows take other kernels), so at least MIN_ROWS rows stay (finished ones make up
the number).
"""

from __future__ import annotations

import torch
from transformers import Cache

LEAVE_FRACTION = 0.25  # finished rows leave once they are this share of the batch (each leaving copies the cache)
MIN_ROWS = 8  # rows that always stay (twice the 4 measured: small batches run the kernels' edge cases)


@torch.inference_mode()
def greedy_decode(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: Cache,
                  max_new_tokens: int, eos_ids: list[int], pad_id: int) -> torch.Tensor:
    """Up to `max_new_tokens` greedy tokens per row ([rows, max_new_tokens], `pad_id` after a row's EOS).

    `cache` may already hold the first columns of `input_ids` (a shared prompt prefix): only the rest is pre-filled.
    """
    rows = input_ids.shape[0]
    past = cache.get_seq_length()
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    out = model(input_ids=input_ids[:, past:], attention_mask=attention_mask, position_ids=positions[:, past:],
                cache=cache, use_cache=True, logits_to_keep=1)
    new = torch.full((rows, max_new_tokens), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    live = torch.arange(rows, device=input_ids.device)  # the batch row each cache row belongs to
    finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    eos = torch.tensor(eos_ids, device=input_ids.device)
    mask, position = attention_mask, positions[:, -1]
    for step in range(max_new_tokens):
        tokens = out.logits[:, -1].argmax(dim=-1)
        new[live, step] = torch.where(finished[live], pad_id, tokens)
        finished[live] |= torch.isin(tokens, eos)
        if finished.all() or step == max_new_tokens - 1:
            break
        staying = ~finished[live]
        leaving = len(live) - max(int(staying.sum()), MIN_ROWS)
        if leaving > 0 and leaving >= LEAVE_FRACTION * len(live):  # the rows still decoding, topped up to MIN_ROWS
            keep = torch.argsort(staying.int(), descending=True, stable=True)[: len(live) - leaving].sort().values
            cache.reorder_cache(keep)
            live, tokens, mask, position = live[keep], tokens[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        position = position + 1
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache,
                    use_cache=True, logits_to_keep=1)
    return new
