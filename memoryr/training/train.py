"""GRPO training: problems -> prompts -> TRL's GRPOTrainer with outcome and memory rewards -> a run folder.

The run folder (`output_dir`) holds `run.json` (resolved config, library versions, seed, command),
`metrics.jsonl` (one object per logged step), `completions.jsonl` (sampled completions with their
rewards), and TRL checkpoints, each with the episodic memories saved beside the model in `memory/`.
"""

from __future__ import annotations

import importlib.util
import json
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from datasets import Dataset
from scipy.stats import spearmanr
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerState
from transformers.trainer_callback import ProgressCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from memoryr.checkpoints import (MARKER, RunLock, append_line, checkpoint_step, checkpoints, crash_point, folder_bytes,
                                 is_complete, latest_complete_checkpoint, mark_complete, marker_record, recover,
                                 refuse_link, remove_folder, replace_text, staging, swap_in, writing)
from memoryr.evaluation.evaluate import evaluate
from memoryr.hardware import cpu_precision_fallback
from memoryr.jsonl_log import read_log
from memoryr.memory.encoder import encoder_device
from memoryr.models import context_length, load_tokenizer, resolve_model
from memoryr.run_record import record_resume, resume_entry, write_run_record
from memoryr.tasks.data import Problem, load_problems, parse_task_config
from memoryr.tasks.prompts import build_prompt, check_prompt_lengths
from memoryr.tasks.rewards import MEMORY_REWARDS, TIE_TOLERANCE, RewardFn, correctness, outcome_reward
from memoryr.training.advantage_shares import advantage_shares
from memoryr.training.config import ScriptArguments, resolved_config
from memoryr.training.data_order import EpochSampler
from memoryr.training.packed_decode import packed_generate, packing_fallback
from memoryr.training.placebo import permute_within_groups
from memoryr.training.progress import KeyNumbersBar, hide_library_bars, silence_library_deprecations
from memoryr.training.shared_prefix import StepPrompts, shared_prefix_generate, shared_prefix_logps

CORRECTNESS_REWARDS = ("correctness", "cosine")  # > 0 means a correct completion in both
SAMPLES_PER_LOG = 4  # completions written to completions.jsonl at each logged step


def load_split(args: ScriptArguments, task: str, split: str, limit: int | None, seed: int) -> list[Problem]:
    """Problems of one split of a task, with the run's data settings."""
    return load_problems(
        task,
        split,
        path=args.data_path if (task, split) == (args.task, args.train_split) else None,
        data_dir_setting=args.data_dir,
        limit=limit,
        seed=seed,
        size=args.task_size,
        shuffle=args.shuffle_problems and split == args.train_split,
        question_field=args.question_field,
        answer_field=args.answer_field,
        task_config=parse_task_config(args.task_config),
        validation_size=args.validation_size,
    )


def build_dataset(args: ScriptArguments, tokenizer, seed: int) -> Dataset:
    """Training rows: the rendered prompt (cut to `max_prompt_length` tokens when set) plus the columns
    rewards read (question, answer, prefill)."""
    problems = load_split(args, args.task, args.train_split, args.train_limit, seed)
    prompts = [build_prompt(tokenizer, p.question, args.shots, args.exemplars, args.prefill, args.system_prompt)
               for p in problems]
    if args.max_prompt_length is not None:
        cut = [keep_last_tokens(tokenizer, prompt, args.max_prompt_length) for prompt in prompts]
        count = sum(new != old for new, old in zip(cut, prompts))
        print(f"[memoryr] max_prompt_length {args.max_prompt_length}: cut {count} of {len(prompts)} training prompts "
              "to their last tokens (the start of the system prompt goes first), as TRL 0.14 did")
        prompts = cut
    rows = [
        {"prompt": prompt, "question": p.question, "answer": p.answer, "prefill": args.prefill}
        for prompt, p in zip(prompts, problems)
    ]
    return Dataset.from_list(rows)


def keep_last_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """A prompt longer than `max_tokens` tokens cut on the left to its last `max_tokens` tokens (TRL 0.14's
    `prompt_ids[:, -max_prompt_length:]`), decoded back to text with its special tokens; shorter ones unchanged."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[-max_tokens:], skip_special_tokens=False)


def build_rewards(args: ScriptArguments, training_args: GRPOConfig):
    """The reward callables named in the recipe, and the memory reward among them (or None); the memory's
    encoder runs on `encoder_device` (auto: this process's accelerator)."""
    funcs: list[RewardFn] = []
    memory = None
    max_len = args.cosine_max_len or training_args.max_completion_length
    for name in args.reward_funcs:
        if name in MEMORY_REWARDS:
            if memory is not None:
                raise ValueError("choose one memory reward: memoryr or memoryr+")
            memory = build_memory_reward(args, exploration=name == "memoryr+",
                                         device=encoder_device(args.encoder_device, training_args.device))
            funcs.append(memory)
        else:
            funcs.append(outcome_reward(name, args.grading, max_len))
    return funcs, memory


def build_memory_reward(args: ScriptArguments, exploration: bool, device: str):
    """Memory-R (exploitation) or Memory-R+ (exploitation + exploration) as one reward, its encoder on `device`."""
    from memoryr.memory.encoder import SentenceEncoder
    from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig

    # the paper counts the exploration warm-up in training steps, the reference code in failure questions
    warmup = "explore_warmup_steps" if args.memory_mode == "paper" else "explore_warmup_failure_keys"
    config = MemoryRewardConfig(
        exploration=exploration,
        k=args.memory_k,
        max_keys=args.memory_max_keys,
        max_per_key=args.memory_max_per_key,
        window=args.memory_window,
        beta_exploit=args.memory_beta_exploit,
        beta_explore=args.memory_beta_explore,
        tau_success=args.memory_tau_success,
        tau_failure=args.memory_tau_failure,
        mode=args.memory_mode,
        **{warmup: args.memory_explore_warmup},
    )
    return MemoryReward(config, SentenceEncoder(args.encoder, device=device), partial(correctness, grading=args.grading))


def evals_record(task: str, split: str, history: list[dict]) -> dict:
    """evals.json: every held-out evaluation, the last, and the best (the earliest of equal bests)."""
    best = max(history, key=lambda h: (h["accuracy"], -h["step"]))
    return {"task": task, "split": split, "history": history, "last": history[-1], "best": best}


class HeldOutEval(TrainerCallback):
    """Greedy pass@1 on a fixed held-out subset (`eval_split`, normally validation) every `eval_steps`, at
    the end and, with `eval_at_start`, before the first step (step 0); tracks best and last.

    Results go to metrics.jsonl as `eval/accuracy` and `eval/parse_rate` (with `eval/split`), and to
    `evals.json` with the best and last step; the best model so far is saved in `best/` (whole or
    absent), since checkpoint rotation may delete the checkpoint it came from. `best/` is chosen on
    this split; `memoryr sweep` then measures best/ and final/ on `test_split`.
    """

    def __init__(self, args: ScriptArguments, training_args: GRPOConfig, tokenizer, context: int | None, out: Path):
        task = args.eval_task or args.task
        self.problems = load_split(args, task, args.eval_split, args.eval_limit, training_args.seed)
        prompts = [build_prompt(tokenizer, p.question, args.shots, args.exemplars, args.prefill, args.system_prompt)
                   for p in self.problems]
        check_prompt_lengths(prompts, tokenizer, context, training_args.max_completion_length,
                             what=f"{args.eval_split} prompts", budget="max_completion_length",
                             fix="remove those problems (the in-training evaluation does not cut its prompts)")
        self.task, self.args, self.tokenizer, self.out = task, args, tokenizer, out
        self.max_new_tokens = training_args.max_completion_length
        self.every = training_args.eval_steps
        self.bar = not training_args.disable_tqdm

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.args.eval_at_start and state.global_step == 0:  # the untrained model: the "before" figure
            self._evaluate(0, model, args.seed, state.is_world_process_zero)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step == state.max_steps or (self.every and step % int(self.every) == 0):
            self._evaluate(step, model, args.seed, state.is_world_process_zero)

    def _evaluate(self, step: int, model, seed: int, main: bool) -> None:
        if main:
            started = time.perf_counter()
            result = evaluate(
                model, self.tokenizer, self.problems, shots=self.args.shots, exemplars=self.args.exemplars,
                prefill=self.args.prefill, system_prompt=self.args.system_prompt, grading=self.args.grading,
                batch_size=self.args.eval_batch_size, max_new_tokens=self.max_new_tokens, seed=seed,
                progress=self.bar, bar_position=1, share_prefix=self.args.eval_share_prefix,
            )
            if self._record(step, result, time.perf_counter() - started):
                tmp = staging(self.out / "best")
                with writing(self.out / "best", needed=lambda: tensor_bytes(model.state_dict())):
                    model.save_pretrained(tmp)
                    self.tokenizer.save_pretrained(tmp)
                swap_in(self.out / "best")
        PartialState().wait_for_everyone()

    def _record(self, step: int, result: dict, seconds: float) -> bool:
        """Log one evaluation (and how long it took); True when it is a new best."""
        split = self.args.eval_split
        row = {"step": step, "eval/accuracy": result["pass@1"], "eval/parse_rate": result["parse_rate"],
               "eval/task": self.task, "eval/split": split, "eval/n": result["n"], "eval/seconds": seconds}
        append_line(self.out / "metrics.jsonl", json.dumps(row) + "\n", "mid-metrics-append")
        path = self.out / "evals.json"
        history = json.loads(path.read_text())["history"] if path.exists() else []
        history.append({"step": step, "accuracy": result["pass@1"], "parse_rate": result["parse_rate"]})
        record = evals_record(self.task, split, history)
        replace_text(path, json.dumps(record, indent=2))
        tqdm.write(f"[memoryr] step {step}: {self.task} {split} accuracy {result['pass@1']:.3f} "
                   f"(best {record['best']['accuracy']:.3f} at step {record['best']['step']})")
        return record["best"]["step"] == step


class MemoryrTrainer(GRPOTrainer):
    """GRPOTrainer that also writes metrics.jsonl / completions.jsonl, saves memories in checkpoints,
    (with `share_prompt_prefix`) runs each distinct prompt once per step in generation and
    forward/backward, and (with `pack_decode_weights`) decodes with MKL-packed weights on CPU."""

    def __init__(self, *args, memory=None, share_prompt_prefix: bool = False, pack_decode_weights: bool = False,
                 permute_rewards: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.memory = memory
        self.permuted = [self.reward_func_names.index(name) for name in permute_rewards]
        self.step_rewards: torch.Tensor | None = None  # the rewards of the step being scored, for advantage_shares
        self.loss_from_start = True  # whether _total_loss_scalar sums the losses since step 1 (see _run_epoch)
        self.share_prompt_prefix = share_prompt_prefix
        # one prompt pass per optimizer step needs the backward to stay ours (no DDP/DeepSpeed hooks)
        single = self.accelerator.distributed_type == DistributedType.NO
        self.step_prompts = StepPrompts() if share_prompt_prefix and single else None
        policy = self.accelerator.unwrap_model(self.model)  # the object TRL's unwrap_model_for_generation hands back
        if share_prompt_prefix:
            policy.generate = partial(shared_prefix_generate, policy.generate, policy)
        if pack_decode_weights:
            notice = packing_fallback(policy)
            if notice:
                print(f"[memoryr] {notice}")
            else:
                policy.generate = partial(packed_generate, policy.generate, policy)

    def _get_train_sampler(self, dataset=None):
        """TRL's sampler, with each epoch's order a pure function of (seed, epoch) (see data_order.py)."""
        trl = super()._get_train_sampler(dataset)
        self.train_sampler = EpochSampler(trl.data_source, trl.mini_repeat_count, trl.batch_size, trl.repeat_count,
                                          trl.shuffle, trl.seed)
        return self.train_sampler

    def _run_epoch(self, *args, epoch: int, resume_from_checkpoint=None, epochs_trained: int = 0, **kwargs):
        """Set what transformers leaves as it was at the start when a run resumes: the sampler's epoch (its own
        `set_epoch` call misses the sampler behind a 2-process resume's skipped batches) and the sum of the
        logged losses behind `train_loss`, which the checkpoint's marker holds."""
        self.train_sampler.set_epoch(epoch)
        if resume_from_checkpoint is not None and epoch == epochs_trained:
            total = marker_record(Path(resume_from_checkpoint)).get("loss_total")
            self.loss_from_start = total is not None  # checkpoints written before memoryr kept the total lack it
            if total is not None:
                self._total_loss_scalar = total
        return super()._run_epoch(*args, epoch=epoch, resume_from_checkpoint=resume_from_checkpoint,
                                  epochs_trained=epochs_trained, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.step_prompts is not None and self.accelerator.sync_gradients:  # the step's last micro-batch
            started = time.perf_counter()
            self.step_prompts.backward()
            self._metrics["train"]["step_time"][-1] += time.perf_counter() - started  # TRL timed the step without it
        return loss

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, **multimodal,
    ):
        if not self.share_prompt_prefix or compute_aux_loss or any(v is not None for v in multimodal.values()):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal,
            )
        batch_size = batch_size or input_ids.size(0)
        step_prompts = self.step_prompts if torch.is_grad_enabled() else None  # no_grad passes share within a call
        chunks = [
            shared_prefix_logps(model, input_ids[i:i + batch_size], attention_mask[i:i + batch_size],
                                logits_to_keep, compute_entropy, step_prompts)
            for i in range(0, input_ids.size(0), batch_size)
        ]
        logps = torch.cat([c[0] for c in chunks])
        entropies = torch.cat([c[1] for c in chunks]) if compute_entropy else None
        return logps, entropies, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_loss" in logs and self.loss_from_start:  # the mean over all steps, not this call's alone
            logs["train_loss"] = self._total_loss_scalar / max(self.state.global_step, 0.001)
        super().log(logs, start_time)
        if not self.accelerator.is_main_process or not self.model.training:
            return
        record = self.state.log_history[-1]
        out = Path(self.args.output_dir)
        append_line(out / "metrics.jsonl", json.dumps(record) + "\n", "mid-metrics-append")
        if "loss" in record:
            self._write_samples(out / "completions.jsonl", self.state.global_step)

    def _write_samples(self, path: Path, step: int) -> None:
        prompts, completions = list(self._logs["prompt"]), list(self._logs["completion"])
        rewards = {name: list(values) for name, values in self._logs["rewards"].items()}
        with open(path, "a") as f:
            for i in range(min(SAMPLES_PER_LOG, len(completions))):
                row = {
                    "step": step,
                    "prompt_tail": prompts[i][-200:],
                    "completion": completions[i],
                    "rewards": {name: values[i] for name, values in rewards.items()},
                }
                f.write(json.dumps(row) + "\n")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (the whole step's, gathered), the `permute_rewards` among each group's completions (a
        placebo), plus `frac_groups_with_correct`: the share of prompt groups holding at least one correct
        completion, i.e. where a success can be learnt from, `frac_groups_tied` (the share of `tied_groups`),
        `frac_groups_other_rewards_only` (see `other_rewards_only_fraction`) and, for a memory reward,
        `memory/rank_corr_correct_mixed` (see `mixed_rank_correlation`)."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.model.training:
            return rewards
        if self.permuted:
            rewards = permute_within_groups(rewards, self.permuted, self.num_generations, self.args.seed,
                                            self.state.global_step)
        self.step_rewards = rewards
        tied = tied_groups(rewards, self.reward_weights, self.num_generations)
        self._metrics["train"]["frac_groups_tied"].append(tied.double().mean().item())
        names = [n for n in CORRECTNESS_REWARDS if n in self.reward_func_names]
        if names:
            correctness = rewards[:, self.reward_func_names.index(names[0])]
            has_correct = (correctness.view(-1, self.num_generations) > 0).any(dim=1)
            self._metrics["train"]["frac_groups_with_correct"].append(has_correct.float().mean().item())
            moved = other_rewards_only_fraction(correctness, tied, self.num_generations)
            self._metrics["train"]["frac_groups_other_rewards_only"].append(moved)
            memory = [i for i, name in enumerate(self.reward_func_names) if name in MEMORY_REWARDS]
            rho = mixed_rank_correlation(rewards[:, memory[0]], correctness, self.num_generations) if memory else None
            if rho is not None:
                self._metrics["train"]["memory/rank_corr_correct_mixed"].append(rho)
        return rewards

    def _generate_and_score_completions(self, inputs):
        """TRL's step inputs, and where their advantages came from (`advantage_shares`, logged as `advantage/...`)."""
        output = super()._generate_and_score_completions(inputs)
        names = [n for n in CORRECTNESS_REWARDS if n in self.reward_func_names]
        if self.model.training and self.step_rewards is not None and names and \
                self.multi_objective_aggregation == "sum_then_normalize":
            rewards, self.step_rewards = self.step_rewards, None
            advantages = torch.tensor(list(self._logs["advantages"])[-rewards.size(0):])  # TRL's, all processes'
            correct = rewards[:, self.reward_func_names.index(names[0])] > 0
            for key, value in advantage_shares(rewards, self.reward_weights, advantages, correct, self.num_generations,
                                               self.reward_func_names).items():
                self._metrics["train"][key].append(value)
        return output

    def _save_checkpoint(self, model, trial):
        """Memories first, then TRL's checkpoint, then the completion marker; only then rotate old ones. A full
        disk is one error naming the folder, which has no marker, so resume drops it."""
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            refuse_link(folder)
        with writing(folder, needed=lambda: self._checkpoint_bytes(folder.parent)):
            if self.args.should_save:
                (folder / MARKER).unlink(missing_ok=True)  # a replayed step's folder counts only once rewritten
                if self.memory is not None:
                    self.memory.save(folder / "memory", step=self.state.global_step)
                    crash_point("after-memory-save")
            limit, self.args.save_total_limit = self.args.save_total_limit, None  # no rotation inside TRL's save
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            if self.args.should_save:
                crash_point("before-marker")
                mark_complete(folder, self.state.global_step, loss_total=self.loss_total())
        if self.args.should_save:
            crash_point("before-rotation")
            rotate_checkpoints(str(folder.parent), limit, self.state.best_model_checkpoint)
            crash_point("after-rotation")

    def loss_total(self) -> float:
        """The sum of the losses so far, logged or not yet: what `train_loss` divides by the step count."""
        return self._total_loss_scalar + self._tr_loss.item()

    def _save_optimizer_and_scheduler(self, output_dir):
        crash_point("after-model-save")  # the model files are written, the optimizer not yet
        super()._save_optimizer_and_scheduler(output_dir)

    def _checkpoint_bytes(self, out: Path) -> int:
        """About what a checkpoint takes: the newest complete one's size, else the model's and optimizer's tensors."""
        previous, _ = latest_complete_checkpoint(out)
        if previous is not None:
            return folder_bytes(previous)
        return tensor_bytes([self.model.state_dict(), self.optimizer.state_dict()])


def tensor_bytes(state) -> int:
    """Bytes of the tensors in a state dict, nested ones (an optimizer's) included: about what saving it writes."""
    if torch.is_tensor(state):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        state = list(state.values())
    return sum(tensor_bytes(part) for part in state) if isinstance(state, (list, tuple)) else 0


def mixed_rank_correlation(values: torch.Tensor, correctness: torch.Tensor, group_size: int) -> float | None:
    """Mean over the groups holding right and wrong completions of Spearman's correlation between `values` (a
    memory reward, as the policy received it) and correctness; None when no such group has varying values.

    Inside a mixed group, a memory reward that ranks right answers above wrong ones echoes correctness; one that
    does not reorders same-correctness completions by something else."""
    rhos = []
    for v, c in zip(values.view(-1, group_size).tolist(), (correctness.view(-1, group_size) > 0).tolist()):
        if any(c) and not all(c) and len(set(v)) > 1:
            rhos.append(spearmanr(v, c).statistic)
    return sum(rhos) / len(rhos) if rhos else None


def tied_groups(rewards: torch.Tensor, weights: torch.Tensor, group_size: int,
                tolerance: float = TIE_TOLERANCE) -> torch.Tensor:
    """Per prompt group, whether its weighted total rewards all lie within `tolerance`: no advantage to learn from.

    TRL's `frac_reward_zero_std` tests a float32 std with `isclose` (atol 1e-8), which float32 rounding of a
    weighted sum exceeds (eight equal totals under reward_weights [1.72, 1, ...] have a std of 2.5e-7), so it
    counts such groups as untied. Totals here are float64; rows without any reward (all NaN) are left out.
    """
    return _group_spread(_weighted_totals(rewards, weights), group_size) < tolerance


def other_rewards_only_fraction(correctness: torch.Tensor, tied: torch.Tensor, group_size: int,
                                tolerance: float = TIE_TOLERANCE) -> float:
    """Share of prompt groups whose correctness rewards are tied but whose weighted totals are not (`tied`, from
    `tied_groups`).

    In these groups (all right or all wrong) the other rewards, format or memory, alone set the advantages,
    and TRL's per-group std scaling (`scale_rewards: group`) makes them full size however small their spread.
    """
    tied_correctness = _group_spread(correctness.double(), group_size) < tolerance
    return (tied_correctness & ~tied).double().mean().item()


def _weighted_totals(rewards: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each completion's weighted total reward in float64; NaN for a completion no reward function scored."""
    totals = (rewards.double() * weights.double().to(rewards.device)).nansum(dim=1)
    totals[torch.isnan(rewards).all(dim=1)] = float("nan")
    return totals


def _group_spread(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """max - min of each group of `group_size` consecutive values, NaNs left out (an all-NaN group: -inf, tied)."""
    groups = values.view(-1, group_size)
    return groups.nan_to_num(nan=-torch.inf).amax(dim=1) - groups.nan_to_num(nan=torch.inf).amin(dim=1)


def trimmed_logs(out: Path, step: int, finished: bool = False) -> dict[Path, str]:
    """New contents of the run's logs without rows written after `step` (resume from checkpoint-`step`); the
    end-of-training summary row goes too unless the checkpoint is the run's last (`finished`).

    Computed before anything is written. The logs are read with `read_log`: a torn last line (a crash
    mid-append) is dropped with a warning naming the file; any other bad line is an error naming file:line.
    """
    contents = {}
    for name in ("metrics.jsonl", "completions.jsonl"):
        path = out / name
        if not path.exists():
            continue
        # rows after the checkpoint go, and so does the end-of-training summary unless the checkpoint is the last
        kept = [row for row in read_log(path) if row.get("step", 0) <= step and (finished or "train_runtime" not in row)]
        contents[path] = "".join(json.dumps(row) + "\n" for row in kept)  # as written: json round-trips
    evals = out / "evals.json"
    if evals.exists():
        try:
            record = json.loads(evals.read_text())
            history = [h for h in record["history"] if h["step"] <= step]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{evals} is not a memoryr evals record; the run's log is damaged") from None
        contents[evals] = json.dumps(evals_record(record["task"], record.get("split", "test"), history), indent=2) \
            if history else ""
    return contents


def resume_point(out: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, saying which newer ones were skipped and why; None, saying
    that the run starts over, when there is none."""
    checkpoint, skipped = latest_complete_checkpoint(out) if out.is_dir() else (None, [])
    for line in skipped:
        print(f"[memoryr] {out}: {line}")
    if not out.is_dir():
        print(f"[memoryr] --resume: {out} does not exist: starting a new run")
    elif checkpoint is None:
        print(f"[memoryr] --resume: no complete checkpoint-* folder in {out}: starting the run over")
    else:
        print(f"[memoryr] resuming {out} from {checkpoint.name}")
    return checkpoint


def train(
    script_args: ScriptArguments,
    training_args: GRPOConfig,
    model_args: ModelConfig,
    trainer_cls: type[MemoryrTrainer] = MemoryrTrainer,
) -> Path:
    """Run GRPO with the configured rewards (with `trainer_cls`, e.g. a timed one); returns the run folder.

    Everything is checked before the run folder changes: the checkpoint to resume, its memories, the
    logs to trim. One process at a time may write a run folder (`RunLock`).
    """
    silence_library_deprecations()
    out = Path(training_args.output_dir)
    main = PartialState().is_main_process
    with ExitStack() as stack:
        locked = main and out.is_dir()
        if locked:
            stack.enter_context(RunLock(out))
        checkpoint = None
        if script_args.resume:
            if is_complete(out / "final"):
                print(f"[memoryr] {out} is finished (final/ is complete): nothing to resume")
                return out
            checkpoint = resume_point(out)
        elif (out / "metrics.jsonl").exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another output_dir")

        if training_args.use_vllm and importlib.util.find_spec("vllm") is None:
            print("[memoryr] vLLM is not installed: generating with transformers instead")
            training_args.use_vllm = False
        notice = cpu_precision_fallback(training_args)
        if notice:
            print(f"[memoryr] {notice}")
        model_path = resolve_model(model_args.model_name_or_path)
        tokenizer = load_tokenizer(model_args.model_name_or_path)
        dataset = build_dataset(script_args, tokenizer, training_args.seed)
        context = context_length(model_path)
        check_prompt_lengths(list(dataset["prompt"]), tokenizer, context, training_args.max_completion_length,
                             what="training prompts", budget="max_completion_length",
                             fix="set max_prompt_length to at most {room} to cut them to their last tokens, or remove "
                                 "those problems")
        reward_funcs, memory = build_rewards(script_args, training_args)
        callbacks = None
        if script_args.eval_limit > 0:
            callbacks = [HeldOutEval(script_args, training_args, tokenizer, context, out)]
        if checkpoint is not None:
            step = checkpoint_step(checkpoint)
            if memory is not None:
                memory.load(checkpoint / "memory", step=step)
            finished = _finished_at(checkpoint, training_args.max_steps)
            logs = trimmed_logs(out, step, finished)
        model_init = dict(training_args.model_init_kwargs or {})
        if model_args.dtype is not None:
            model_init["dtype"] = model_args.dtype
        training_args.model_init_kwargs = model_init or None

        started_over = script_args.resume and checkpoint is None and (out / "run.json").exists()
        if main:  # validated: now the run folder may change
            if checkpoint is None:
                out.mkdir(parents=True, exist_ok=True)
                if not locked:
                    stack.enter_context(RunLock(out))
                if started_over:  # killed before its first checkpoint: nothing of that attempt may stay
                    _clear_run(out)
            else:
                _prepare_resume(out, checkpoint, logs, training_args.save_total_limit)
        hide_library_bars()  # downloads are done; bars for loading and saving weights would break the training bar
        trainer = trainer_cls(
            model=model_path,
            reward_funcs=reward_funcs,
            args=training_args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
            callbacks=callbacks,
            memory=memory,
            share_prompt_prefix=script_args.share_prompt_prefix,
            pack_decode_weights=script_args.pack_decode_weights,
            permute_rewards=tuple(script_args.permute_rewards),
        )
        if not training_args.disable_tqdm:  # one bar with the key numbers; every metric still goes to metrics.jsonl
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(KeyNumbersBar())
        if main:
            config = resolved_config(script_args, training_args, model_args)
            if checkpoint is None and not started_over:
                write_run_record(out / "run.json", config, training_args.seed)
            else:
                record_resume(out / "run.json", config, training_args.seed, resume_entry(checkpoint))
        if checkpoint is not None and finished:
            # transformers would run one step past the end when resuming a finished run's last checkpoint
            trainer._load_from_checkpoint(str(checkpoint))
            trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))
            if main and '"train_runtime"' not in logs.get(out / "metrics.jsonl", ""):
                _log_summary(out, trainer.state, marker_record(checkpoint).get("loss_total"))
        else:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        save_final(trainer, memory, out)
    return out


def _finished_at(checkpoint: Path, max_steps: int) -> bool:
    """Whether a checkpoint is the end of training (its step reached max_steps, or its own planned steps)."""
    state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))
    return state.global_step >= (max_steps if max_steps > 0 else state.max_steps)


def _log_summary(out: Path, state: TrainerState, loss_total: float | None) -> None:
    """The end-of-training row for a run killed after its last checkpoint and before transformers wrote the row:
    train_loss over all steps as MemoryrTrainer.log computes it (None when the checkpoint predates the loss total
    in its marker), and this call's timings (no steps trained)."""
    train_loss = loss_total / max(state.global_step, 0.001) if loss_total is not None else None
    row = {"train_runtime": 0.0, "train_samples_per_second": 0.0, "train_steps_per_second": 0.0,
           "total_flos": state.total_flos, "train_loss": train_loss, "epoch": state.epoch, "step": state.global_step}
    append_line(out / "metrics.jsonl", json.dumps(row) + "\n", "mid-metrics-append")


def _clear_run(out: Path) -> None:
    """Remove what a run that made no complete checkpoint wrote (logs, models, checkpoints, TensorBoard events),
    keeping run.json, which records the restart, and the lock."""
    for name in ("metrics.jsonl", "completions.jsonl", "evals.json"):
        (out / name).unlink(missing_ok=True)
    for folder in (out / "best", out / "final"):
        recover(folder)  # their staged and moved-aside copies
        remove_folder(folder)
    for folder in [*checkpoints(out), out / "runs"]:
        remove_folder(folder)


def _prepare_resume(out: Path, checkpoint: Path, logs: dict[Path, str], save_total_limit: int | None = None) -> None:
    """Drop newer incomplete checkpoints, finish a rotation a crash cut short, repair a half-swapped best/
    or final/, and trim the logs to the checkpoint."""
    for folder in checkpoints(out):
        if checkpoint_step(folder) > checkpoint_step(checkpoint):
            remove_folder(folder)
    rotate_checkpoints(str(out), save_total_limit)
    recover(out / "best")
    recover(out / "final")
    for path, text in logs.items():
        if path.name == "evals.json" and not text:
            path.unlink()
        else:
            replace_text(path, text)


def save_final(trainer: MemoryrTrainer, memory, out: Path) -> None:
    """final/: the model, its memories and the completion marker, staged and renamed into place."""
    main = trainer.accelerator.is_main_process
    tmp = staging(out / "final") if main else out / ".final.tmp"
    with writing(out / "final", needed=lambda: tensor_bytes(trainer.model.state_dict())):
        trainer.save_model(str(tmp))
        if main:
            if memory is not None:
                memory.save(tmp / "memory", step=trainer.state.global_step)
            crash_point("inside-final")
            mark_complete(tmp, trainer.state.global_step)
    if main:
        swap_in(out / "final")
    trainer.accelerator.wait_for_everyone()
