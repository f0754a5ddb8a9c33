"""The library API: lazy exports, `memory_reward`, and `MemoryCheckpointCallback` with a plain trl.GRPOTrainer."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

import memoryr
from memoryr.memory.episodic import MemoryFileError
from memoryr.memory.rewards import FAILURE_FILE, STATE_FILE, SUCCESS_FILE
from memoryr.tasks.rewards import full_texts
from scripts.memory_multiprocess import HashEncoder  # deterministic vectors from a text's sha256

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/grpo_memory_reward.py"
MEMORY_FILES = (SUCCESS_FILE, FAILURE_FILE, STATE_FILE)


def odd_length_is_correct(completions, answer, prefill):
    """A stand-in correctness that fills both memories with a random model's completions."""
    return [float(len(t) % 2) for t in full_texts(completions, prefill)]


def test_import_memoryr_loads_no_heavy_library_until_a_name_is_used():
    code = ("import sys, memoryr; heavy = {'torch', 'transformers', 'trl'} & set(sys.modules); assert not heavy, heavy; "
            "memoryr.MemoryReward; assert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_public_name_is_its_modules_object():
    from memoryr.memory.encoder import SentenceEncoder
    from memoryr.memory.episodic import EpisodicMemory
    from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig
    from memoryr.memory.trl_integration import MemoryCheckpointCallback, memory_reward
    from memoryr.tasks.rewards import REWARDS, correctness, outcome_reward

    expected = {"MemoryReward": MemoryReward, "MemoryRewardConfig": MemoryRewardConfig, "EpisodicMemory": EpisodicMemory,
                "SentenceEncoder": SentenceEncoder, "REWARDS": REWARDS, "outcome_reward": outcome_reward,
                "correctness": correctness, "memory_reward": memory_reward,
                "MemoryCheckpointCallback": MemoryCheckpointCallback}
    assert sorted(memoryr.__all__) == sorted(expected)
    for name, obj in expected.items():
        assert getattr(memoryr, name) is obj, name
    assert set(memoryr.__all__) <= set(dir(memoryr))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        memoryr.nope


def test_memory_reward_defaults_to_memoryr_plus_graded_on_the_answer_column_and_takes_chat_completions():
    reward = memoryr.memory_reward(encoder=HashEncoder(), window=7)
    assert reward.__name__ == "memoryr+" and reward.config.mode == "paper" and reward.config.window == 7
    assert memoryr.memory_reward(False, mode="reference", encoder=HashEncoder()).__name__ == "memoryr"
    right = [{"role": "assistant", "content": "<reasoning>\n2 + 1 = 3\n</reasoning>\n<answer>\n3\n</answer>"}]
    wrong = [{"role": "assistant", "content": "<reasoning>\nguess\n</reasoning>\n<answer>\n5\n</answer>"}]
    rewards = reward(prompts=["p", "p"], completions=[right, wrong], question=["q", "q"], answer=["3", "3"])
    assert rewards == [0.0, 0.0]  # both memories were empty when the step was scored
    assert (reward.success.num_entries, reward.failure.num_entries) == (1, 1)


def test_callback_saves_with_each_checkpoint_and_restores_on_resume(tmp_path):
    reward = memoryr.memory_reward(encoder=HashEncoder(), correctness=odd_length_is_correct)
    reward(completions=["ab", "abc", "abcd"], question=["q"] * 3, answer=["0"] * 3)
    args, control = SimpleNamespace(output_dir=str(tmp_path), should_save=True, world_size=1), TrainerControl()
    memoryr.MemoryCheckpointCallback(reward).on_save(args, TrainerState(global_step=2), control)
    folder = tmp_path / "checkpoint-2" / "memory"
    assert json.loads((folder / STATE_FILE).read_text())["step"] == 2
    # processes that write no checkpoints write no memories
    not_writer = SimpleNamespace(output_dir=str(tmp_path), should_save=False)
    memoryr.MemoryCheckpointCallback(reward).on_save(not_writer, TrainerState(global_step=4), control)
    assert not (tmp_path / "checkpoint-4").exists()

    fresh = memoryr.memory_reward(encoder=HashEncoder(), correctness=odd_length_is_correct)
    callback = memoryr.MemoryCheckpointCallback(fresh)
    callback.on_train_begin(args, TrainerState(global_step=0), control)  # a new run starts empty
    assert fresh.failure.num_entries == 0
    callback.on_train_begin(args, TrainerState(global_step=2), control)
    assert fresh.success.to_bytes() == reward.success.to_bytes() and fresh.failure.to_bytes() == reward.failure.to_bytes()
    assert fresh.calls == 1

    with pytest.raises(FileNotFoundError, match="resuming at step 3, but .*checkpoint-3/memory does not exist"):
        callback.on_train_begin(args, TrainerState(global_step=3), control)
    shutil.copytree(folder, tmp_path / "checkpoint-3" / "memory")  # another step's memories are refused
    with pytest.raises(MemoryFileError, match="saved at step 2, but its checkpoint is at step 3"):
        callback.on_train_begin(args, TrainerState(global_step=3), control)


def test_callback_refuses_launched_processes_that_train_apart(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # accelerate launched 2 processes, but the trainer runs alone (CPU, no use_cpu)
    callback = memoryr.MemoryCheckpointCallback(memoryr.memory_reward(encoder=HashEncoder()))
    args = SimpleNamespace(output_dir="unused", world_size=1)
    with pytest.raises(RuntimeError, match="2 processes were launched, but each trains alone.*use_cpu=True"):
        callback.on_train_begin(args, TrainerState(global_step=0), TrainerControl())
    callback.on_train_begin(SimpleNamespace(output_dir="unused", world_size=2), TrainerState(global_step=0),
                            TrainerControl())


def train_plain_grpo(output_dir: Path, resume: Path | None = None):
    """4 steps of a plain trl.GRPOTrainer on tiny-random with the memory reward and its callback; returns the reward."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from memoryr.models import load_tokenizer, resolve_model
    from memoryr.tasks.data import load_problems

    problems = load_problems("gsm8k", "train", limit=8)
    dataset = Dataset.from_list([{"prompt": f"Question: {p.question}\nAnswer:", "question": p.question,
                                  "answer": p.answer} for p in problems])
    reward = memoryr.memory_reward(encoder=HashEncoder(), correctness=odd_length_is_correct, explore_warmup_steps=1)
    config = GRPOConfig(output_dir=str(output_dir), max_steps=4, save_steps=2, per_device_train_batch_size=8,
                        num_generations=8, max_completion_length=16, activation_checkpointing=False, use_cpu=True,
                        bf16=False, logging_steps=1, report_to="none", seed=0)
    trainer = GRPOTrainer(model=resolve_model("tiny-random"), reward_funcs=[reward], args=config,
                          train_dataset=dataset, processing_class=load_tokenizer("tiny-random"))
    trainer.add_callback(memoryr.MemoryCheckpointCallback(reward))
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return reward


@pytest.mark.slow
def test_plain_grpo_trainer_resumed_from_a_checkpoint_ends_with_byte_identical_memories(tmp_path, tiny_model_path,
                                                                                         data_dir):
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full = train_plain_grpo(full_dir)
    assert full.success.num_entries > 0 and full.failure.num_entries > 0
    shutil.copytree(full_dir / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train_plain_grpo(resumed_dir, resume=resumed_dir / "checkpoint-2")
    assert resumed.calls == full.calls == 4
    for name in MEMORY_FILES:
        expected = (full_dir / "checkpoint-4" / "memory" / name).read_bytes()
        assert (resumed_dir / "checkpoint-4" / "memory" / name).read_bytes() == expected, name


def run_example(launcher: list[str], *args: str, data_dir: Path) -> None:
    """Run the example script to the end, failing with its last output."""
    env = dict(os.environ, MEMORYR_DATA_DIR=str(data_dir))
    done = subprocess.run([sys.executable, *launcher, EXAMPLE, "--model", "tiny-random", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_example_script_trains_two_steps_then_resumes_with_its_memories(tmp_path, tiny_model_path, data_dir):
    out = tmp_path / "example"
    run_example([], "--max_steps", "2", "--output_dir", str(out), data_dir=data_dir)
    first = json.loads((out / "checkpoint-2" / "memory" / STATE_FILE).read_text())
    assert (first["step"], first["name"], first["dim"], first["calls"]) == (2, "memoryr+", 384, 2)
    run_example([], "--max_steps", "3", "--resume", "--output_dir", str(out), data_dir=data_dir)
    last = json.loads((out / "checkpoint-3" / "memory" / STATE_FILE).read_text())
    assert (last["step"], last["calls"]) == (3, 3)  # the resumed run loaded checkpoint-2's memories


@pytest.mark.slow
def test_example_script_under_accelerate_launch_shares_one_memory(tmp_path, tiny_model_path, data_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    out = tmp_path / "example"
    run_example(launcher, "--max_steps", "2", "--output_dir", str(out), data_dir=data_dir)
    logs = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    stored = [row["memory/success_entries"] + row["memory/failure_entries"] for row in logs if "loss" in row]
    assert stored == [16, 32]  # one run: both processes' 2 x 8 completions of each step reach the memory
