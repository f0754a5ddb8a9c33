"""Real GRPO runs with TRL's GRPOTrainer on the tiny random model: metrics, weights, memories, resume."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file
from trl.trainer.utils import nanstd

from memoryr.evaluation.summary import summarise_run
from memoryr.models import load_tokenizer
from memoryr.tasks.prompts import build_prompt
from memoryr.training.config import parse_config
from memoryr.training.train import (_prepare_resume, build_dataset, build_rewards, evals_record, keep_last_tokens,
                                   other_rewards_only_fraction, tied_groups, train, trimmed_logs)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = ["--model_name_or_path", "tiny-random", "--max_completion_length", "24", "--gradient_checkpointing", "false",
        "--eval_limit", "4", "--eval_batch_size", "4"]


def run(tmp: Path, recipe: str, *extra: str) -> Path:
    args = parse_config(["--config", str(RECIPES / recipe), *TINY, "--output_dir", str(tmp), *extra])
    return train(*args)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tied_groups_are_counted_on_weighted_totals_despite_float32_rounding():
    weights = torch.tensor([1.72, 1.0, 1.0, 1.0, 1.0])  # study 2's reweighted control: 1.72 is not exact in float32
    right = [1.0, 0.0, 0.5, 0.5, 1.0]  # total 3.72
    tied = torch.tensor([right] * 8)
    apart = torch.tensor([right] * 7 + [[0.0, 0.0, 0.5, 0.5, 1.0]])  # one wrong completion: total 2.0
    totals = (tied * weights).nansum(dim=1).view(1, 8)
    assert not torch.isclose(nanstd(totals, dim=1), torch.zeros(1))  # TRL's test calls this group untied
    assert tied_groups(tied, weights, group_size=8).tolist() == [True]
    assert tied_groups(torch.cat([tied, apart]), weights, group_size=8).tolist() == [True, False]
    unscored = tied.clone()
    unscored[1] = float("nan")  # a completion no reward function scored is left out
    assert tied_groups(torch.cat([apart, unscored]), weights, group_size=8).tolist() == [False, True]
    nearly = tied.clone()
    nearly[0, 1] += 1e-7  # below the tolerance: no advantage to learn from
    assert tied_groups(nearly, weights, group_size=8).tolist() == [True]


def test_groups_tied_on_correctness_but_moved_by_other_rewards_are_counted():
    weights = torch.tensor([1.0, 1.0, 1.0])  # correctness, strict_format, memory
    wrong = [[0.0, 0.5, 0.30]] * 8  # all wrong, same format, same memory reward: no advantage at all
    memory_moved = [[0.0, 0.5, 0.30 + 0.01 * i] for i in range(8)]  # all wrong: memory rewards alone differ
    format_moved = [[1.0, 0.5, 0.0]] * 7 + [[1.0, 0.0, 0.0]]  # all right: one misses the format
    mixed = [[1.0, 0.5, 0.9]] + [[0.0, 0.5, 0.1]] * 7  # correctness differs: not counted
    rewards = torch.tensor(wrong + memory_moved + format_moved + mixed)
    tied = tied_groups(rewards, weights, group_size=8)
    assert tied.tolist() == [True, False, False, False]  # only the first is tied in total
    assert other_rewards_only_fraction(rewards[:, 0], tied, group_size=8) == 0.5  # 2 of the 4 groups
    off = torch.tensor([1.0, 1.0, 0.0])  # weight 0 on memory: its spread no longer moves the totals
    tied_off = tied_groups(rewards, off, group_size=8)
    assert other_rewards_only_fraction(rewards[:, 0], tied_off, group_size=8) == 0.25


@pytest.mark.slow
def test_three_memoryrplus_steps_change_weights_and_log_everything(tmp_path, tiny_model_path, data_dir, capsys, recwarn):
    out = run(tmp_path / "run", "gsm8k-memoryrplus-cpu.yaml", "--max_steps", "3", "--save_steps", "3",
              "--memory_explore_warmup", "1", "--eval_at_start", "true")
    rows = [r for r in metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    required = ["rewards/correctness/mean", "rewards/correctness/std", "rewards/xml_count/mean", "rewards/memoryr+/mean",
                "completions/mean_length", "completions/min_length", "completions/max_length",
                "completions/clipped_ratio", "frac_reward_zero_std", "frac_groups_tied", "frac_groups_with_correct", "frac_groups_other_rewards_only", "loss", "learning_rate", "step_time",
                "memory/failure_entries", "memory/seconds"]
    for key in required:
        assert key in rows[-1], key
    assert rows[0]["memory/failure_entries"] == 8 and rows[-1]["memory/failure_entries"] == 24
    # from step 2 on the failure memory makes rewards differ inside a group, so the policy moves
    assert rows[-1]["frac_reward_zero_std"] < 1.0
    before = load_file(str(Path(tiny_model_path) / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before)
    assert (out / "checkpoint-3" / "memory" / "memory_failure.safetensors").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["script"]["reward_funcs"][-1] == "memoryr+" and record["versions"]["trl"].startswith("1.16")
    evals = json.loads((out / "evals.json").read_text())
    assert evals["task"] == "gsm8k" and evals["last"]["step"] == 3 and 0.0 <= evals["best"]["accuracy"] <= 1.0
    assert [h["step"] for h in evals["history"]] == [0, 3]  # eval_at_start: the untrained model first
    assert "before training" in summarise_run(out)
    # the console: one bar with the key numbers, no per-step dict, no library deprecation notices
    console = capsys.readouterr()
    assert "reward=" in console.err and "memory=" in console.err and "{'loss'" not in console.out + console.err
    assert not [w for w in recwarn if "past_key_values" in str(w.message) or "is_gradient_checkpointing" in str(w.message)]
    assert any("eval/accuracy" in r for r in metrics(out))
    assert (out / "best" / "model.safetensors").exists()
    samples = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert samples and {"step", "completion", "rewards"} <= set(samples[0])
    # TensorBoard (every recipe's default) shows the rewards and the memory metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "runs").iterdir()))).Reload()
    tags = events.Tags()["scalars"]
    assert {"train/rewards/memoryr+/mean", "train/memory/failure_entries", "train/frac_groups_with_correct"} <= set(tags)
    assert [e.value for e in events.Scalars("train/memory/failure_entries")] == [8, 16, 24]


@pytest.mark.slow
def test_resume_reproduces_memory_and_rewards_of_uninterrupted_run(tmp_path, tiny_model_path, data_dir):
    steps = ["--max_steps", "4", "--save_steps", "2", "--memory_explore_warmup", "1"]
    full = run(tmp_path / "full", "gsm8k-memoryrplus-cpu.yaml", *steps)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed_dir / "checkpoint-2")
    shutil.copy(full / "run.json", resumed_dir / "run.json")
    resumed = run(resumed_dir, "gsm8k-memoryrplus-cpu.yaml", *steps, "--resume", "true")
    memory_keys = ["rewards/memoryr+/mean", "rewards/memoryr+/std", "memory/failure_entries", "memory/explore_raw_mean"]
    full_rows = {r["step"]: r for r in metrics(full) if "loss" in r}
    resumed_rows = {r["step"]: r for r in metrics(resumed) if "loss" in r}
    assert sorted(resumed_rows) == [3, 4]
    for step in (3, 4):
        for key in memory_keys:
            assert resumed_rows[step][key] == full_rows[step][key], (step, key)
    for name in ("memory_success.safetensors", "memory_failure.safetensors", "memory_state.json"):
        assert (full / "checkpoint-4" / "memory" / name).read_bytes() == (resumed / "checkpoint-4" / "memory" / name).read_bytes()


def trained_questions(completions: Path) -> list[str]:
    """The question of each logged step (the user turn at the end of its prompt), in step order."""
    rows = [json.loads(line) for line in completions.read_text().splitlines()]
    return list({r["step"]: r["prompt_tail"].rsplit("<|im_start|>user", 1)[-1] for r in rows}.values())


@pytest.mark.slow
def test_study2_data_order_is_unchanged(tmp_path, tiny_model_path):
    """Study 2's uninterrupted runs stay valid: its R1 run at seed 1 trained on these questions, step by step
    (32 problems, 2.5 epochs); the order depends on the data settings and the seed, not on the model."""
    study = Path(__file__).resolve().parents[1] / "results" / "study2" / "report" / "runs" / "study2-r1-seed1"
    out = train(*parse_config(["--config", str(RECIPES / "study2-r1.yaml"), "--seed", "1", *TINY,
                               "--max_completion_length", "4", "--eval_limit", "0", "--save_steps", "80",
                               "--output_dir", str(tmp_path / "order"), "--disable_tqdm", "true"]))
    expected = trained_questions(study / "completions.jsonl")
    assert len(expected) == 80 and len(set(expected)) == 31  # two of the 32 problems are "Calculate 0 - 9."
    assert trained_questions(out / "completions.jsonl") == expected


def test_a_reused_output_dir_is_a_clear_error(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "metrics.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        run(tmp_path / "used", "gsm8k-r1-cpu.yaml")


@pytest.mark.slow
def test_study_recipe_smoke_with_real_smollm2(tmp_path):
    """Two real steps of the CPU study's Memory-R+ recipe: reasoning-gym data, SmolLM2, MiniLM, held-out eval."""
    out = train(*parse_config(["--config", str(RECIPES / "arith-memoryrplus-cpu.yaml"), "--max_steps", "2",
                               "--max_completion_length", "32", "--eval_limit", "4", "--save_steps", "2",
                               "--output_dir", str(tmp_path / "smoke")]))
    rows = [r for r in metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["rewards/xml_count/mean"] > 0  # the pre-filled "<reasoning>" already earns a tag
    assert json.loads((out / "evals.json").read_text())["last"]["step"] == 2


def test_resume_forgets_log_rows_written_after_the_checkpoint(tmp_path, capsys):
    rows = [{"step": s, "loss": s / 3} for s in (1, 2, 3)] + [{"step": 2, "eval/accuracy": 0.5}]
    rows.append({"step": 2, "train_runtime": 9.0})  # the end-of-training summary: rewritten when the run ends
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
    kept = json.dumps({"step": 1, "completion": "½\n", "rewards": {"memoryr+": float("nan")}}) + "\n"
    (tmp_path / "completions.jsonl").write_text(kept + json.dumps({"step": 3, "completion": "x"}) + "\n")
    history = [{"step": 2, "accuracy": 0.5, "parse_rate": 1.0}, {"step": 3, "accuracy": 0.75, "parse_rate": 1.0}]
    (tmp_path / "evals.json").write_text(json.dumps(evals_record("gsm8k", "validation", history)))
    for step in (3, 4):  # newer checkpoints, the second one incomplete: both removed on resume
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2").mkdir()
    _prepare_resume(tmp_path, tmp_path / "checkpoint-2", trimmed_logs(tmp_path, 2))
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(rows[i]) + "\n" for i in (0, 1, 3))
    assert f"{tmp_path / 'metrics.jsonl'}: dropped a torn last line" in capsys.readouterr().out
    assert (tmp_path / "completions.jsonl").read_text() == kept  # the rows kept are the bytes written
    evals = json.loads((tmp_path / "evals.json").read_text())
    assert evals["best"]["step"] == 2 and evals["last"]["step"] == 2 and len(evals["history"]) == 1
    assert evals["split"] == "validation"
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]


def test_a_damaged_log_line_before_the_last_stops_resume_before_anything_changes(tmp_path):
    text = '{"step": 1, "loss": 0.0}\n{"step": 2, "lo\n{"step": 3, "loss": 0.0}\n'
    (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.raises(ValueError, match="metrics.jsonl:2: not valid JSON"):
        trimmed_logs(tmp_path, 3)
    assert (tmp_path / "metrics.jsonl").read_text() == text


def test_best_is_the_earliest_of_equal_accuracies():
    history = [{"step": s, "accuracy": a, "parse_rate": 1.0} for s, a in ((10, 0.2), (20, 0.4), (30, 0.4), (40, 0.1))]
    record = evals_record("arith", "validation", history)
    assert record["best"]["step"] == 20 and record["last"]["step"] == 40


@pytest.mark.slow
def test_lora_run_saves_an_adapter(tmp_path, tiny_model_path, data_dir):
    out = run(tmp_path / "lora", "gsm8k-r1-cpu.yaml", "--max_steps", "1", "--use_peft", "true", "--lora_r", "4")
    assert (out / "final" / "adapter_config.json").exists() and not (out / "final" / "model.safetensors").exists()


def test_max_prompt_length_keeps_the_last_tokens_and_says_how_many_prompts_it_cut(tiny_model_path, data_dir, capsys):
    script, _, _ = parse_config(["--config", str(RECIPES / "gsm8k-r1-paper.yaml"), "--bf16", "false", "--use_cpu", "true",
                                 "--model_name_or_path", "tiny-random", "--train_limit", "5", "--max_prompt_length", "60"])
    tokenizer = load_tokenizer("tiny-random")
    rows = build_dataset(script, tokenizer, seed=42)
    assert "max_prompt_length 60: cut 5 of 5 training prompts" in capsys.readouterr().out
    for row in rows:  # TRL 0.14's prompt_ids[:, -60:]: the start goes (here the system prompt and part of the question)
        whole = build_prompt(tokenizer, row["question"], system_prompt="reference")
        assert tokenizer(row["prompt"], add_special_tokens=False)["input_ids"] == \
            tokenizer(whole, add_special_tokens=False)["input_ids"][-60:]
        assert whole.endswith(row["prompt"]) and "Respond in the following format" not in row["prompt"]
    assert keep_last_tokens(tokenizer, "<|im_start|>user\nHi<|im_end|>", 60) == "<|im_start|>user\nHi<|im_end|>"


def test_memory_encoder_runs_on_the_training_processes_device(monkeypatch):
    """encoder_device auto: the process's accelerator under accelerate, here (a CPU run) the CPU."""
    import memoryr.memory.encoder

    devices = []

    class RecordingEncoder:
        dim = 384

        def __init__(self, name, device="cpu"):
            devices.append(device)

    monkeypatch.setattr(memoryr.memory.encoder, "SentenceEncoder", RecordingEncoder)
    recipe = ["--config", str(RECIPES / "gsm8k-memoryrplus-cpu.yaml")]
    script, training, _ = parse_config(recipe)
    assert script.encoder_device == "auto" and training.device.type == "cpu"
    _, memory = build_rewards(script, training)
    script, training, _ = parse_config([*recipe, "--encoder_device", "cpu"])
    build_rewards(script, training)
    assert devices == ["cpu", "cpu"] and memory.__name__ == "memoryr+"


def test_encoder_device_auto_follows_the_process_device():
    import torch

    from memoryr.memory.encoder import encoder_device

    assert encoder_device("auto", torch.device("cpu")) == "cpu"
    assert encoder_device("auto", torch.device("cuda", 1)) == "cuda:1"  # the GPU of process 1 under accelerate
    assert encoder_device("cuda:0", torch.device("cpu")) == "cuda:0"  # an explicit device is taken as written


@pytest.mark.slow
def test_paper_recipe_runs_a_step_with_trl_014s_loss_and_kl(tmp_path, tiny_model_path, data_dir, capsys):
    """gsm8k-r1-paper on the tiny model, shrunk to 1 prompt x 4 on CPU: reference model for the KL, grpo loss,
    the reference's prompt and grading, prompts cut to max_prompt_length, vLLM absent."""
    out = run(tmp_path / "paper", "gsm8k-r1-paper.yaml", "--bf16", "false", "--use_cpu", "true", "--dtype", "float32",
              "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--num_generations", "4",
              "--max_steps", "1", "--train_limit", "8", "--max_prompt_length", "64", "--report_to", "none")
    printed = capsys.readouterr().out
    assert "cut 8 of 8 training prompts" in printed and "vLLM is not installed" in printed
    row = next(r for r in metrics(out) if "loss" in r)
    assert row["kl"] == 0.0  # before its first update the policy is the reference model
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["training"]["loss_type"] == "grpo" and config["script"]["grading"] == "reference"
