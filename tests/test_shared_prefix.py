"""Prompt sharing equals the plain path: log-probs, entropies, gradients and sampled tokens, in and out of GRPO."""

import json

import pytest
import torch
from test_train import RECIPES, TINY
from transformers import AutoModelForCausalLM, GenerationConfig
from trl.trainer.utils import add_fused_lm_head

import memoryr.training.train
from memoryr.tasks.rewards import full_texts
from memoryr.training.config import ConfigError, parse_config
from memoryr.training.shared_prefix import StepPrompts, shared_prefix_generate, shared_prefix_logps
from memoryr.training.train import train


@pytest.fixture(scope="module")
def model(tiny_model_path):
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    add_fused_lm_head(m, outputs=("log_probs", "entropy"))
    return m


def batch(completion_len: int = 7):
    """6 rows over 2 distinct prompts (one left-padded), completions of different lengths."""
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(5, 100, (2, 12), generator=g)
    prompt_mask = torch.ones(2, 12, dtype=torch.long)
    prompts[1, :3], prompt_mask[1, :3] = 0, 0
    which = torch.tensor([0, 0, 1, 0, 1, 1])
    completions = torch.randint(5, 100, (6, completion_len), generator=g)
    completion_mask = torch.ones(6, completion_len, dtype=torch.long)
    completion_mask[2, 4:], completion_mask[5, 1:] = 0, 0
    ids = torch.cat([prompts[which], completions], dim=1)
    mask = torch.cat([prompt_mask[which], completion_mask], dim=1)
    return ids, mask, completion_mask


def plain_logps(model, ids, mask, keep):
    """TRL's own computation: the whole sequence in one forward, completion tokens scored."""
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -keep:], out.entropy[:, -keep:]


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_logps_entropies_and_gradients_match_the_plain_forward(model):
    ids, mask, completion_mask = batch()
    plain, plain_entropy = plain_logps(model, ids, mask, 7)
    shared, shared_entropy = shared_prefix_logps(model, ids, mask, 7, compute_entropy=True)
    m = completion_mask.bool()
    torch.testing.assert_close(shared[m], plain[m], rtol=0, atol=1e-5)
    torch.testing.assert_close(shared_entropy[m], plain_entropy[m], rtol=0, atol=1e-5)
    # a loss that weighs rows differently, so a wrong row-to-prompt mapping changes the gradient
    weights = torch.arange(1, 7, dtype=torch.float32)[:, None]
    g_plain = grads(model, (plain * completion_mask * weights).sum())
    shared, _ = shared_prefix_logps(model, ids, mask, 7)
    g_shared = grads(model, (shared * completion_mask * weights).sum())
    assert g_plain.abs().max() > 1e-3
    torch.testing.assert_close(g_shared, g_plain, rtol=0, atol=1e-5 * g_plain.abs().max().item())


def test_padding_columns_past_every_completion_are_not_run(model):
    ids, mask, completion_mask = batch()
    completion_mask[:, 4:] = 0  # every completion ends by column 4: the last 3 columns are padding everywhere
    mask[:, -7:] = completion_mask
    plain, plain_entropy = plain_logps(model, ids, mask, 7)
    suffix_lengths = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: suffix_lengths.append(kwargs["input_ids"].size(1)), with_kwargs=True)
    shared, shared_entropy = shared_prefix_logps(model, ids, mask, 7, compute_entropy=True)
    hook.remove()
    assert suffix_lengths == [11, 1 + 4]  # the prompt pass, then its last token and the 4 filled columns
    assert shared.shape == shared_entropy.shape == (6, 7)
    m = completion_mask.bool()
    torch.testing.assert_close(shared[m], plain[m], rtol=0, atol=1e-5)
    torch.testing.assert_close(shared_entropy[m], plain_entropy[m], rtol=0, atol=1e-5)
    assert not shared[:, 4:].any() and not shared_entropy[:, 4:].any()


def test_step_prompts_run_each_prompt_once_per_step_with_the_plain_gradient(model):
    ids, mask, completion_mask = batch()
    weights = torch.arange(1, 7, dtype=torch.float32)[:, None]
    g_plain = grads(model, (plain_logps(model, ids, mask, 7)[0] * completion_mask * weights).sum())
    prefix_passes = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: prefix_passes.append(kwargs["input_ids"].size(0)) if kwargs["input_ids"].size(1) == 11 else None,
        with_kwargs=True)
    model.zero_grad()
    step = StepPrompts()
    for rows in (slice(0, 3), slice(3, 6)):  # two micro-batches, each holding both prompts
        logps, _ = shared_prefix_logps(model, ids[rows], mask[rows], 7, step_prompts=step)
        (logps * completion_mask[rows] * weights[rows]).sum().backward()
    hook.remove()
    step.backward()
    g_step = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert prefix_passes == [2]  # both distinct prompts, in the first micro-batch only
    torch.testing.assert_close(g_step, g_plain, rtol=0, atol=1e-5 * g_plain.abs().max().item())


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_generation_from_a_shared_prefill_gives_the_plain_tokens(model, sample, cache):
    ids, mask, _ = batch()
    prompt_ids, prompt_mask = ids[:, :12], mask[:, :12]
    config = GenerationConfig(max_new_tokens=10, do_sample=sample, temperature=1.0, top_k=0, top_p=1.0,
                              cache_implementation=cache, pad_token_id=0, eos_token_id=None)
    torch.manual_seed(3)
    plain = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
    caches = []

    def generate(**kwargs):
        caches.append(type(kwargs["past_key_values"]).__name__)
        return model.generate(**kwargs)

    torch.manual_seed(3)
    shared = shared_prefix_generate(generate, model, prompt_ids, prompt_mask, generation_config=config)
    assert torch.equal(shared, plain)
    assert caches == [{"static": "StaticCache", "dynamic": "DynamicCache"}[cache]]  # decoding from the pre-fill
    assert config.cache_implementation == cache  # the caller's config is left as it was


def test_a_one_token_prompt_cannot_be_shared(model):
    ids = torch.randint(5, 100, (2, 5))
    with pytest.raises(ValueError, match="at least 2 prompt tokens"):
        shared_prefix_logps(model, ids, torch.ones_like(ids), 4)


def test_sharing_with_gradient_checkpointing_is_a_config_error():
    with pytest.raises(ConfigError, match="gradient_checkpointing false"):
        parse_config(["--config", str(RECIPES / "gsm8k-r1-cpu.yaml"), "--share_prompt_prefix", "true",
                      "--gradient_checkpointing", "true"])


def varied_reward(completions, **kwargs) -> list[float]:
    """Differs between the tiny model's random completions, so advantages and the gradient are not zero."""
    return [float(len(text) % 7) for text in full_texts(completions)]


@pytest.mark.slow
def test_grpo_step_with_shared_prompts_has_the_plain_loss_and_gradient(tmp_path, tiny_model_path, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(memoryr.training.train, "shared_prefix_logps",
                        lambda *a, **k: calls.append(k.get("step_prompts", a[-1])) or shared_prefix_logps(*a, **k))
    monkeypatch.setattr(memoryr.training.train, "build_rewards", lambda args, training_args: ([varied_reward], None))
    rows, used = {}, {}
    for name, flags in {"plain": ["--share_prompt_prefix", "false"], "shared": ["--share_prompt_prefix", "true"],
                        "shared+packed": ["--share_prompt_prefix", "true", "--pack_decode_weights", "true"]}.items():
        out = tmp_path / name
        train(*parse_config(["--config", str(RECIPES / "gsm8k-r1-cpu.yaml"), *TINY, "--output_dir", str(out),
                             "--max_steps", "1", "--eval_limit", "0", *flags]))
        rows[name] = next(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "loss" in line)
        used[name], calls[:] = list(calls), []
    assert used["plain"] == []
    # the shared runs trained 4 micro-batches of 2 through one StepPrompts, reused across the step
    assert len(used["shared"]) == 4 and all(isinstance(s, StepPrompts) for s in used["shared"])
    assert rows["plain"]["grad_norm"] > 0.01
    for name in ("shared", "shared+packed"):
        assert rows[name]["completions/mean_length"] == rows["plain"]["completions/mean_length"]
        assert rows[name]["reward"] == rows["plain"]["reward"]  # the same completions were sampled
        assert rows[name]["grad_norm"] == pytest.approx(rows["plain"]["grad_norm"], rel=1e-4)
        assert rows[name]["loss"] == pytest.approx(rows["plain"]["loss"], abs=1e-6)
        assert rows[name]["entropy"] == pytest.approx(rows["plain"]["entropy"], rel=1e-5)
