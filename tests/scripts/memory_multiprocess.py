"""Feed fixed completions to MemoryReward for 3 steps; save this rank's rewards and memories.

Run as `python memory_multiprocess.py OUT` (one process) or under `accelerate launch` with
ACCELERATE_USE_CPU=1 (each rank gets its contiguous slice of every step). Groups of 4 completions
straddle the 6/6 split. An Accelerator is created first, as GRPOTrainer does.
"""

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from accelerate import Accelerator

from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig

STEPS, BATCH, GROUP = 3, 12, 4


class HashEncoder:
    """Deterministic 8-d vectors from a text's sha256."""

    dim = 8

    def encode(self, texts):
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8) for t in texts]
        return (np.array(rows, np.float32) - 127.5).reshape(-1, self.dim)

    encode_queries = encode


def correctness(completions, answer, prefill):
    return [1.0 if c.endswith(a) else 0.0 for c, a in zip(completions, answer)]


def step_inputs(step):
    """A global batch: 3 questions x 4 completions, about a third of them correct (uneven per group)."""
    questions = [f"question {(step * 3 + i // GROUP) % 5}" for i in range(BATCH)]
    completions = [f"reasoning {step}-{i} answer {(step + i * i) % 3}" for i in range(BATCH)]
    return questions, completions, ["0"] * BATCH


def main(out: Path):
    state = Accelerator().state
    n = BATCH // state.num_processes
    mine = slice(state.process_index * n, (state.process_index + 1) * n)
    config = MemoryRewardConfig(exploration=True, explore_warmup_steps=1, window=5, k=2, max_keys=3, max_per_key=3)
    reward = MemoryReward(config, HashEncoder(), correctness)
    rewards = []
    for step in range(STEPS):
        questions, completions, answers = step_inputs(step)
        rewards.append(
            reward(
                completions=completions[mine],
                question=questions[mine],
                answer=answers[mine],
                prefill=[""] * n,
                trainer_state=SimpleNamespace(global_step=step),
            )
        )
    reward.save(out / f"rank{state.process_index}")
    (out / f"rank{state.process_index}_rewards.json").write_text(json.dumps(rewards))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
