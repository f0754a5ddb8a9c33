"""Greedy decoding in which finished rows leave the batch: the tokens of `generate`, with a batch that shrinks."""

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from memoryr.evaluation.greedy_decode import MIN_ROWS, greedy_decode
from memoryr.evaluation.prompt_prefix import prompt_prefix


def test_rows_leave_the_batch_and_every_row_keeps_the_tokens_generate_gives_it(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights than its init, so that each token depends on the context and positions
        for weight in model.parameters():
            if weight.ndim > 1:
                weight.normal_(0.0, 0.3)
    shared = torch.randint(3, 200, (12,)).tolist()
    rows = [shared + torch.randint(3, 200, (n,)).tolist() for n in (5, 1, 3, 4, 2, 5, 1, 3) * 2]
    prefix = prompt_prefix(model, rows)
    width = max(len(r) for r in rows)
    pad = 0  # left padding between the prefix and each remainder, as `prefixed_batch` lays it out
    ids = torch.tensor([r[: len(prefix.ids)] + [pad] * (width - len(r)) + r[len(prefix.ids):] for r in rows])
    mask = torch.tensor([[1] * len(prefix.ids) + [0] * (width - len(r)) + [1] * (len(r) - len(prefix.ids))
                         for r in rows])
    max_new = 12

    def generated(eos: list[int]) -> torch.Tensor:
        config = GenerationConfig(max_new_tokens=max_new, do_sample=False, pad_token_id=pad, eos_token_id=eos)
        with torch.inference_mode():
            cache = prefix.cache(model, len(rows), width + max_new)
            out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, generation_config=config)
        new = out[:, width:]
        return torch.nn.functional.pad(new, (0, max_new - new.shape[1]), value=pad)

    # "EOS": the tokens ten of the 16 rows produce third: they finish together, the other six go on
    free = generated([1])
    eos = sorted({free[row, 2].item() for row in range(10)})
    expected = generated(eos)
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    decoded = greedy_decode(model, ids, mask, prefix.cache(model, len(rows), width + max_new), max_new, eos, pad)
    hook.remove()
    assert torch.equal(decoded, expected)
    assert torch.isin(expected, torch.tensor(eos)).any(dim=1).tolist() == [True] * 10 + [False] * 6
    # the 10 left at once: the 6 still decoding stay, with 2 finished rows to make up MIN_ROWS
    assert sizes[0] == len(rows) and min(sizes) == MIN_ROWS
