"""The placebo control (a reward permuted inside each group), where advantages come from, and the memory reward's
rank correlation with correctness: numbers by hand, then a real GRPO run."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from memoryr.training.advantage_shares import advantage_shares
from memoryr.training.config import ConfigError, parse_config
from memoryr.training.placebo import permute_within_groups
from memoryr.training.train import mixed_rank_correlation, train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# two groups of 4: (correctness, format, memory); the first mixed, the second all wrong and moved by memory alone
REWARDS = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.5, 0.6], [0.0, 0.0, 0.1], [0.0, 0.5, 0.3],
                        [0.0, 0.5, 0.2], [0.0, 0.5, 0.4], [0.0, 0.5, 0.2], [0.0, 0.5, 0.4]])


def test_a_permuted_reward_keeps_each_groups_values_and_only_they_move():
    permuted = permute_within_groups(REWARDS, [2], group_size=4, seed=1, step=3)
    assert torch.equal(permuted[:, :2], REWARDS[:, :2])  # the other rewards stay with their completions
    for start in (0, 4):
        assert sorted(permuted[start:start + 4, 2].tolist()) == sorted(REWARDS[start:start + 4, 2].tolist())
    assert not torch.equal(permuted, REWARDS)
    assert torch.equal(permute_within_groups(REWARDS, [2], 4, seed=1, step=3), permuted)  # (seed, step) decide it
    assert not torch.equal(permute_within_groups(REWARDS, [2], 4, seed=1, step=4), permuted)


def test_advantage_shares_by_hand():
    weights = torch.ones(3)
    totals = REWARDS.sum(dim=1).view(2, 4)  # scale_rewards none: advantage = total minus the group's mean
    advantages = (totals - totals.mean(dim=1, keepdim=True)).view(-1)
    shares = advantage_shares(REWARDS, weights, advantages, REWARDS[:, 0] > 0, 4, ["correctness", "format", "memory"])
    # mixed group: centred correctness 0.75, -0.25 x3 (sum of magnitudes 1.5); format 0.125 x3, -0.375 (0.75);
    # memory -0.1, 0.3, -0.2, 0.0 (0.6). |A| = 0.775, 0.175, 0.825, 0.125 = 1.9; all-wrong group |A| = 0.1 x4 = 0.4
    assert shares["advantage/mixed/correctness"] == pytest.approx(1.5 / 2.85)
    assert shares["advantage/mixed/format"] == pytest.approx(0.75 / 2.85)
    assert shares["advantage/mixed/memory"] == pytest.approx(0.6 / 2.85)
    assert shares["advantage/mixed/share"] == pytest.approx(1.9 / 2.3)
    assert shares["advantage/all_wrong/share"] == pytest.approx(0.4 / 2.3)
    assert shares["advantage/all_wrong/memory"] == pytest.approx(1.0) and shares["advantage/all_wrong/format"] == 0
    assert shares["advantage/all_right/share"] == 0 and "advantage/all_right/memory" not in shares
    # TRL's per-group std scaling changes how much each group counts, not the rewards' shares inside a group
    scaled = (totals - totals.mean(dim=1, keepdim=True)) / (totals.std(dim=1, keepdim=True) + 1e-4)
    again = advantage_shares(REWARDS, weights, scaled.view(-1), REWARDS[:, 0] > 0, 4, ["correctness", "format", "memory"])
    assert again["advantage/mixed/memory"] == pytest.approx(0.6 / 2.85)
    assert again["advantage/all_wrong/share"] > shares["advantage/all_wrong/share"]


def test_advantage_shares_count_a_missing_reward_as_trl_does():
    """A reward a function did not give counts 0 in the total; a completion no function scored leaves its group's
    mean alone and has no advantage (TRL's nansum and unscorable rows)."""
    rewards = torch.tensor([[1.0, float("nan")], [0.0, 0.5], [0.0, 0.5], [float("nan"), float("nan")]])
    # totals 1.0, 0.5, 0.5 over the three scored completions: mean 2/3; TRL's advantages (scale none)
    advantages = torch.tensor([1 / 3, -1 / 6, -1 / 6, 0.0])
    shares = advantage_shares(rewards, torch.ones(2), advantages, torch.tensor([1, 0, 0, 0]),
                              4, ["correctness", "format"])
    # correctness centred on 1/3: 2/3, -1/3, -1/3 (sum of magnitudes 4/3); format on 1/3: -1/3, 1/6, 1/6 (2/3)
    assert shares["advantage/mixed/correctness"] == pytest.approx(2 / 3)
    assert shares["advantage/mixed/format"] == pytest.approx(1 / 3)
    assert shares["advantage/mixed/share"] == pytest.approx(1.0)


def test_the_memory_rewards_rank_correlation_with_correctness_counts_mixed_groups_only():
    echo = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.5])  # right answer ranked first; then a tied group
    correct = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert mixed_rank_correlation(echo, correct, 4) == pytest.approx(0.7745966)  # Spearman, ties averaged
    assert mixed_rank_correlation(-echo, correct, 4) == pytest.approx(-0.7745966)
    assert mixed_rank_correlation(echo, torch.zeros(8), 4) is None  # no mixed group


def test_permute_rewards_must_name_rewards_of_the_run():
    with pytest.raises(ConfigError, match="permute_rewards must be names from reward_funcs"):
        parse_config(["--config", str(RECIPES / "study2-r1.yaml"), "--permute_rewards", "memoryr+"])


def run(out: Path, *extra: str) -> Path:
    return train(*parse_config([
        "--config", str(RECIPES / "gsm8k-memoryrplus-cpu.yaml"), "--model_name_or_path", "tiny-random",
        "--max_completion_length", "8", "--eval_limit", "0", "--max_steps", "4", "--save_steps", "2",
        "--memory_explore_warmup", "1", "--learning_rate", "0", "--disable_tqdm", "true", "--output_dir", str(out),
        *extra]))


def step_rewards(out: Path, name: str) -> dict[int, list[float]]:
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    found: dict[int, list[float]] = {}
    for row in rows:
        found.setdefault(row["step"], []).append(row["rewards"][name])
    return found


@pytest.mark.slow
def test_the_placebo_run_keeps_the_memories_and_permutes_what_each_completion_got(tmp_path, tiny_model_path, data_dir):
    """learning_rate 0: the policy never moves, so both runs sample the same completions and must fill the same
    memories; the placebo's memory reward values are the same per group, given to other completions."""
    plain = run(tmp_path / "plain")
    placebo = run(tmp_path / "placebo", "--permute_rewards", "memoryr+")
    for name in ("memory_success.safetensors", "memory_failure.safetensors", "memory_state.json"):
        assert (plain / "final" / "memory" / name).read_bytes() == (placebo / "final" / "memory" / name).read_bytes()
    rows = {out: [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
            for out in (plain, placebo)}
    for a, b in zip(rows[plain], rows[placebo]):
        for key in ("rewards/memoryr+/mean", "rewards/memoryr+/std"):  # the same values, summed in another order
            assert a[key] == pytest.approx(b[key], rel=1e-6)
        assert a["completions/mean_length"] == b["completions/mean_length"]
    logged = [r for r in rows[placebo] if "advantage/all_wrong/share" in r]
    assert logged and all(r["advantage/all_wrong/memoryr+"] == pytest.approx(1.0) for r in logged)  # format tied
    received = step_rewards(placebo, "memoryr+")
    assert step_rewards(plain, "memoryr+") != received  # logged samples: the first 4 completions of each step
    # killed after checkpoint-2 and resumed: the same permutations at steps 3 and 4
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(placebo / "checkpoint-2", resumed / "checkpoint-2")
    shutil.copy(placebo / "run.json", resumed / "run.json")
    for name in ("metrics.jsonl", "completions.jsonl"):
        kept = [line for line in (placebo / name).read_text().splitlines(keepends=True) if json.loads(line)["step"] <= 2]
        (resumed / name).write_text("".join(kept))
    run(resumed, "--permute_rewards", "memoryr+", "--resume", "true")
    assert step_rewards(resumed, "memoryr+") == received
