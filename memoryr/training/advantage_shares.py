"""Where a step's advantages come from: each reward's share of their magnitude, by group type.

With rewards summed before GRPO's group normalisation, a completion's advantage is a sum of one term per reward:
A_i = f_g * sum_r w_r (x_ir - mean over its group of x_r), where f_g is what TRL's scaling did to group g
(1 / its std under `scale_rewards: group`, 1 under `none`). f_g is read off TRL's actual advantages, so the terms
add up to them. A reward's share is the sum of its terms' magnitudes over the sum of all terms' magnitudes, within
groups whose completions are all right, all wrong, or mixed; each group type's share of the advantages' total
magnitude says which groups steered the update at all.
"""

from __future__ import annotations

import torch

GROUP_TYPES = ("mixed", "all_right", "all_wrong")


def advantage_shares(rewards: torch.Tensor, weights: torch.Tensor, advantages: torch.Tensor, correct: torch.Tensor,
                     group_size: int, names: list[str]) -> dict[str, float]:
    """`advantage/<type>/share`, the type's share of sum |A| (for every type, when the step has any advantage), and
    `advantage/<type>/<reward>`, each reward's share of the type's sum of term magnitudes (where there are any).

    `rewards`: completions x reward functions (NaN where a function did not score), `advantages`: TRL's, one per
    completion, `correct`: whether each completion is right; groups are `group_size` consecutive completions. As in
    TRL, a reward a function did not give counts 0 in a completion's total, and a completion no function scored
    takes no part in its group's mean (and has no advantage).
    """
    rewards, weights, advantages, correct = (t.detach().double().cpu() for t in (rewards, weights, advantages, correct))
    scored = ~torch.isnan(rewards).all(dim=1).view(-1, group_size, 1)
    groups = rewards.nan_to_num(0.0).view(-1, group_size, rewards.size(1))
    means = (groups * scored).sum(dim=1, keepdim=True) / scored.sum(dim=1, keepdim=True).clamp_min(1)
    centred = (groups - means) * scored * weights
    advantages = advantages.view(-1, group_size)
    spread = centred.sum(dim=2).abs().sum(dim=1)
    scale = torch.where(spread > 0, advantages.abs().sum(dim=1) / spread.clamp_min(1e-300), torch.zeros_like(spread))
    terms = (centred * scale.view(-1, 1, 1)).abs()  # group x completion x reward
    right = correct.bool().view(-1, group_size)
    kinds = dict(zip(GROUP_TYPES, (right.any(dim=1) & ~right.all(dim=1), right.all(dim=1), ~right.any(dim=1))))
    total = advantages.abs().sum()
    shares = {}
    for kind, mask in kinds.items():
        if total > 0:  # 0 for a type absent from the step: averaged over steps, the share of the whole update
            shares[f"advantage/{kind}/share"] = (advantages[mask].abs().sum() / total).item()
        mass = terms[mask].sum()
        if mass > 0:
            per_reward = terms[mask].sum(dim=(0, 1)) / mass
            shares.update({f"advantage/{kind}/{name}": value.item() for name, value in zip(names, per_reward)})
    return shares
