"""Recipes and the command line: overrides, clear errors for bad keys and files, and each recipe's batch."""

import re
from pathlib import Path

import pytest
import yaml

from memoryr.training.config import ConfigError, parse_config, valid_keys

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ON_CPU = ["--bf16", "false", "--use_cpu", "true"]  # the paper recipes are for a GPU
# Every recipe states what one optimizer step trains on, e.g. "# per optimizer step: 16 prompts x 16 completions on 1 process".
BATCH_CLAIM = re.compile(r"^# per optimizer step: (\d+) prompts? x (\d+) completions on (\d+) process(?:es)?$", re.MULTILINE)


def test_every_recipe_parses_and_uses_known_rewards():
    from memoryr.tasks.rewards import MEMORY_REWARDS, REWARDS

    recipes = sorted(RECIPES.glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        on_cpu = ON_CPU if recipe.stem.endswith("-paper") else []
        script, training, model = parse_config(["--config", str(recipe), "--output_dir", "/tmp/unused", *on_cpu])
        assert set(script.reward_funcs) <= set(REWARDS) | set(MEMORY_REWARDS), recipe
        assert model.model_name_or_path


def test_command_line_overrides_the_recipe():
    recipe = str(RECIPES / "gsm8k-r1-cpu.yaml")
    script, training, model = parse_config(
        ["--config", recipe, "--model_name_or_path", "tiny-random", "--max_steps", "3", "--shots", "0"]
    )
    assert (model.model_name_or_path, training.max_steps, script.shots) == ("tiny-random", 3, 0)
    assert script.prefill == "<reasoning>\n"  # from the recipe


def test_unknown_key_in_recipe_lists_valid_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "tiny-random", "learning_rat": 1e-5}))
    with pytest.raises(ConfigError) as err:
        parse_config(["--config", str(recipe)])
    message = str(err.value)
    assert "unknown config key 'learning_rat'" in message and "did you mean: learning_rate" in message
    assert "valid keys: " in message and "memory_k" in message and "num_generations" in message


def test_unknown_flag_on_command_line():
    with pytest.raises(ConfigError, match="unknown config key 'max_stepz' in the command line"):
        parse_config(["--model_name_or_path", "tiny-random", "--max_stepz", "3"])  # checked before parsing


def test_missing_recipe_bad_yaml_and_missing_model(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(["--config", str(tmp_path / "none.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config(["--config", str(bad)])
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_config(["--config", str(listy)])
    with pytest.raises(ConfigError, match="no model"):
        parse_config(["--max_steps", "1", "--bf16", "false", "--use_cpu", "true"])
    import torch

    if not torch.cuda.is_available():  # GRPOConfig defaults to bf16, which needs a GPU
        with pytest.raises(ConfigError, match="On a CPU machine use a \\*-cpu recipe"):
            parse_config(["--model_name_or_path", "tiny-random"])


def test_task_config_accepts_a_yaml_mapping(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: tiny-random\nbf16: false\nuse_cpu: true\ntask_config: {max_terms: 2}\n")
    script, _, _ = parse_config(["--config", str(recipe)])
    assert script.task_config == '{"max_terms": 2}'
    with pytest.raises(ConfigError, match="task_config must be a JSON object"):
        parse_config(["--config", str(recipe), "--task_config", "[1]"])


def test_valid_keys_cover_all_three_dataclasses():
    keys = valid_keys()
    assert {"task", "memory_window", "learning_rate", "beta", "lora_r", "model_name_or_path"} <= set(keys)


def test_in_training_evaluation_must_not_overlap_training():
    recipe = str(RECIPES / "gsm8k-r1-cpu.yaml")
    with pytest.raises(ConfigError, match="eval_split 'train' is the training split"):
        parse_config(["--config", recipe, "--eval_split", "train"])
    with pytest.raises(ConfigError, match="eval_split validation needs validation_size >= 1"):
        parse_config(["--config", recipe, "--validation_size", "0"])
    script, _, _ = parse_config(["--config", recipe, "--eval_task", "math500", "--eval_split", "test"])
    assert script.eval_split == "test"  # another task's test split is no overlap
    for recipe in sorted(RECIPES.glob("*.yaml")):  # every recipe chooses best/ on validation
        assert yaml.safe_load(recipe.read_text())["eval_split"] == "validation", recipe


def test_every_recipe_trains_on_the_batch_its_header_claims():
    """TRL 1.16 counts per_device_train_batch_size in completions: a step trains on per-device batch x accumulation x
    processes completions, num_generations per prompt."""
    claims = {}
    for recipe in sorted(RECIPES.glob("*.yaml")):
        found = BATCH_CLAIM.findall(recipe.read_text())
        assert len(found) == 1, f"{recipe.name} needs one '# per optimizer step: P prompts x G completions on N process' line"
        prompts, per_prompt, processes = map(int, found[0])
        on_cpu = ON_CPU if recipe.stem.endswith("-paper") else []
        _, training, _ = parse_config(["--config", str(recipe), "--output_dir", "/tmp/unused", *on_cpu])
        completions = training.per_device_train_batch_size * training.gradient_accumulation_steps * processes
        assert (training.num_generations, completions) == (per_prompt, prompts * per_prompt), recipe.name
        claims[recipe.stem] = (prompts, per_prompt, processes)
    for method in ("r1", "cosine", "memoryr", "memoryrplus"):  # the reference's --bs 2 --gc 8 in TRL 0.14's prompts
        assert claims[f"gsm8k-{method}-paper"] == (16, 16, 1)
    for method in ("r1", "memoryrplus"):  # paper Table 4 for AI-MO: batch 4, accumulation 16, same reading
        assert claims[f"aimo-{method}-paper"] == (64, 16, 1)


def test_paper_recipes_set_trl_014s_meanings():
    """The TRL 0.14 defaults the reference relied on, written out as TRL 1.16 keys (docs/paper-settings.md)."""
    for recipe in sorted(RECIPES.glob("*-paper.yaml")):
        script, training, model = parse_config(["--config", str(recipe), "--output_dir", "/tmp/unused", *ON_CPU])
        assert (training.beta, training.loss_type, training.scale_rewards) == (0.04, "grpo", "group")
        # TRL 0.14 sampled at 0.9 but took the loss's log-probs from raw logits; 1.16 divides them by `temperature`
        assert (training.temperature, training.generation_kwargs) == (1.0, {"temperature": 0.9})
        assert not training.use_bias_correction_kl and not training.vllm_importance_sampling_correction
        assert (training.learning_rate, training.max_grad_norm, training.weight_decay) == (5e-6, 0.1, 0.1)
        assert (training.num_iterations, training.top_p, training.top_k) == (1, 1.0, 0)
        assert model.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and script.system_prompt == "reference"
        assert script.max_prompt_length == (256 if recipe.name.startswith("gsm8k") else 512)
        if "memoryr" in script.reward_funcs[-1]:
            assert script.memory_mode == "reference" and script.encoder_device == "auto"


@pytest.mark.parametrize("flag, value, message", [
    ("--system_prompt", "chatty", "system_prompt must be one of xml, reference, boxed"),
    ("--encoder_device", "gpu", "encoder_device must be auto or a torch device"),
    ("--max_prompt_length", "0", "max_prompt_length must be >= 1"),
    ("--grading", "fuzzy", "grading must be one of strict, last_number, reference, boxed"),
])
def test_new_settings_are_checked(flag, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(["--config", str(RECIPES / "gsm8k-r1-cpu.yaml"), flag, value])
