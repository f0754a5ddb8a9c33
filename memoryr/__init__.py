"""memoryr: Memory-R+ (arXiv 2504.02273), GRPO with episodic-memory intrinsic rewards, as a tool and a library.

Library API, for a plain `trl.GRPOTrainer` script (see examples/grpo_memory_reward.py, and
`memoryr.memory.trl_integration` for the reward's contract with TRL):
    memory_reward(exploration=True, ...) -> MemoryReward   the Memory-R+ reward callable in one call
    MemoryCheckpointCallback(reward)        keeps the memories in the trainer's checkpoints, exact resume
    MemoryReward, MemoryRewardConfig        the reward and its settings (memoryr.memory.rewards)
    EpisodicMemory                          a kNN memory of question keys -> response embeddings
    SentenceEncoder                         the sentence-transformers encoder (all-MiniLM-L6-v2)
    REWARDS, outcome_reward, correctness    the outcome rewards (R1 set, cosine, ...) by name

The names are imported on first use (module `__getattr__`), so `import memoryr` loads neither
torch nor TRL; `from memoryr import MemoryReward` loads what that name needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "memory_reward": "memoryr.memory.trl_integration",
    "MemoryCheckpointCallback": "memoryr.memory.trl_integration",
    "MemoryReward": "memoryr.memory.rewards",
    "MemoryRewardConfig": "memoryr.memory.rewards",
    "EpisodicMemory": "memoryr.memory.episodic",
    "SentenceEncoder": "memoryr.memory.encoder",
    "REWARDS": "memoryr.tasks.rewards",
    "outcome_reward": "memoryr.tasks.rewards",
    "correctness": "memoryr.tasks.rewards",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from memoryr.memory.encoder import SentenceEncoder
    from memoryr.memory.episodic import EpisodicMemory
    from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig
    from memoryr.memory.trl_integration import MemoryCheckpointCallback, memory_reward
    from memoryr.tasks.rewards import REWARDS, correctness, outcome_reward


def __getattr__(name: str):
    """Import an exported name from its module on first access, and keep it here."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'memoryr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, exports included, for tab completion."""
    return sorted({*globals(), *__all__})
