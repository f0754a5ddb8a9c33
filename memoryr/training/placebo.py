"""A placebo for any reward: its values permuted among the completions of each group, at every step.

Permuting a reward inside a group keeps everything about it but its link to the completions: the same values,
the same group means and spreads, and (for a memory reward) the same memories, which are filled by correctness,
not by the memory reward. What a reward does through its content, and not just by adding a spread of that size
to the advantages, is then the difference between the run with the reward and the run with its placebo (the
"shuffled reward" control). The permutation is drawn from (seed, step), so a resumed run permutes alike.
"""

from __future__ import annotations

import numpy as np
import torch


def permute_within_groups(rewards: torch.Tensor, columns: list[int], group_size: int, seed: int,
                          step: int) -> torch.Tensor:
    """`rewards` (completions x reward functions, groups of `group_size` consecutive rows) with each of `columns`
    permuted inside every group; the generator is seeded with (seed, step), each column drawing its own order."""
    rng = np.random.default_rng([seed, step])
    permuted = rewards.clone()
    for column in columns:
        for start in range(0, rewards.size(0), group_size):
            order = torch.from_numpy(rng.permutation(group_size)) + start
            permuted[start:start + group_size, column] = rewards[order, column]
    return permuted
