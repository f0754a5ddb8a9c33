"""The order in which training problems are drawn: a pure function of (seed, epoch), so a resumed run sees the
batches an uninterrupted run sees, whatever epoch its checkpoint is in.

TRL's `RepeatSampler` draws each epoch's permutation from one generator seeded once, at construction: epoch e
of an uninterrupted run gets the generator's (e+1)-th permutation. A run resumed in epoch e builds a new sampler
and starts the loop at epoch e, so it got the *first* permutation again (study 2's runs resumed from
checkpoint-40 trained steps 41-80 on the questions of steps 9-48). `EpochSampler` reseeds at every epoch and
draws the e+1 permutations, which keeps every uninterrupted run's order exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from trl.trainer.utils import RepeatSampler


class EpochSampler(RepeatSampler):
    """TRL's `RepeatSampler` with `set_epoch`: epoch e's order is the (e+1)-th permutation of a generator seeded
    with `seed`, the order an uninterrupted run draws, independent of how many epochs this object has served."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration yields (the trainer sets it before each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle and self.seed is not None:
            self.generator = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epoch):  # the permutations of the epochs before this one
                torch.randperm(self.num_samples, generator=self.generator)
        return super().__iter__()
