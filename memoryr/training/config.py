"""Run configuration: our `ScriptArguments` beside TRL's `GRPOConfig` and `ModelConfig`, from YAML + CLI.

As in open-r1, a recipe is a YAML file whose keys are fields of any of the three dataclasses, and
every field can be overridden on the command line (`--max_steps 3`). An unknown key is an error
that lists the valid ones.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from trl import GRPOConfig, ModelConfig, TrlParser

from memoryr.tasks.data import VALIDATION, parse_task_config
from memoryr.tasks.rewards import DEFAULT_REWARDS
from memoryr.yaml_file import read_yaml


class ConfigError(ValueError):
    """A recipe or command line that cannot be turned into a run configuration."""


@dataclass
class ScriptArguments:
    """memoryr's own settings: data, prompts, grading, rewards and the episodic memory."""

    task: str = field(default="gsm8k", metadata={"help": "Training task: gsm8k, numina-tir, reasoning-gym:<task>, jsonl:PATH."})
    train_split: str = field(default="train", metadata={"help": "Split of the training task."})
    train_limit: int | None = field(default=None, metadata={"help": "Use only the first n training problems (after shuffling)."})
    shuffle_problems: bool = field(default=False, metadata={"help": "Shuffle the problems with the seed before train_limit (a random subset)."})
    task_size: int = field(default=1000, metadata={"help": "Problems to generate for reasoning-gym tasks."})
    task_config: str | None = field(default=None, metadata={"help": "JSON object of reasoning-gym options, e.g. '{\"max_terms\": 3}'."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding gsm8k/, math500/, aime24/ JSONL (else MEMORYR_DATA_DIR, else the hub)."})
    data_path: str | None = field(default=None, metadata={"help": "Explicit JSONL file for the training split (overrides data_dir)."})
    question_field: str = field(default="question", metadata={"help": "Question field for jsonl:PATH tasks."})
    answer_field: str = field(default="answer", metadata={"help": "Gold answer field for jsonl:PATH tasks."})
    shots: int = field(default=0, metadata={"help": "Number of worked exemplars before the question (0-3)."})
    exemplars: str = field(default="word", metadata={"help": "Exemplar set: word (GSM8K-style), arith (two-step expressions) or arith1 (one operation)."})
    prefill: str = field(default="", metadata={"help": "Text that starts the assistant turn, e.g. '<reasoning>\\n'."})
    system_prompt: str = field(default="xml", metadata={"help": "System prompt: xml (memoryr's), reference (the public Memory-R code's text, blank lines included) or boxed (Qwen's step-by-step \\boxed{} instruction)."})
    max_prompt_length: int | None = field(default=None, metadata={"help": "Cut training prompts longer than this many tokens to their last tokens, as TRL 0.14 did (the reference's 256); the count cut is printed. Unset: keep whole prompts."})
    grading: str = field(default="strict", metadata={"help": "strict (<answer> tag, math-verify), last_number, reference (the Memory-R code's extraction, exact string match) or boxed (last \\boxed{})."})
    method: str | None = field(default=None, metadata={"help": "Name of this arm in reports, e.g. 'Memory-R+ (reference)' (default: from reward_funcs: R1, Cosine, Memory-R, Memory-R+)."})
    reward_funcs: list[str] = field(default_factory=lambda: list(DEFAULT_REWARDS), metadata={"help": "Reward names: correctness, int_answer, strict_format, soft_format, xml_count, cosine, reasoning_steps, memoryr, memoryr+."})
    permute_rewards: list[str] = field(default_factory=list, metadata={"help": "Rewards (names in reward_funcs) whose values are permuted among each group's completions at every step, seeded by (seed, step): a placebo with the same values and memories but no link between a completion and its own score."})
    cosine_max_len: int | None = field(default=None, metadata={"help": "Length at which the cosine reward reaches its end value (default: max_completion_length)."})
    encoder: str = field(default="all-MiniLM-L6-v2", metadata={"help": "Sentence encoder for the memories (a sentence-transformers name or folder)."})
    encoder_device: str = field(default="auto", metadata={"help": "Device of the sentence encoder: auto (the training process's accelerator, else the CPU), cpu, cuda, cuda:N, ..."})
    memory_k: int = field(default=1, metadata={"help": "K: query keys retrieved per question (paper: 1 on GSM8K, 20 on AI-MO)."})
    memory_max_keys: int = field(default=10000, metadata={"help": "N: most query keys per memory; the oldest is evicted."})
    memory_max_per_key: int = field(default=100, metadata={"help": "L: most responses kept per query key (FIFO)."})
    memory_window: int = field(default=100, metadata={"help": "w: raw scores in the min-max normalisation window."})
    memory_beta_exploit: float = field(default=1.0, metadata={"help": "beta_s: weight of the exploitation reward."})
    memory_beta_explore: float = field(default=1.0, metadata={"help": "beta_e: weight of the exploration reward (memoryr+ only)."})
    memory_tau_success: float = field(default=0.5, metadata={"help": "tau_s: correctness above this goes to the success memory."})
    memory_tau_failure: float = field(default=0.5, metadata={"help": "tau_f: correctness at or below this goes to the failure memory."})
    memory_explore_warmup: int = field(default=50, metadata={"help": "Exploration starts after this many training steps (paper mode) or failure-memory questions (reference mode)."})
    memory_mode: str = field(default="paper", metadata={"help": "paper (score, then insert) or reference (the public code's choices)."})
    eval_task: str | None = field(default=None, metadata={"help": "Held-out task evaluated every eval_steps (default: the training task)."})
    eval_split: str = field(default="validation", metadata={"help": "Split evaluated during training, which chooses best/: validation (disjoint from train and test), or any split of eval_task."})
    test_task: str | None = field(default=None, metadata={"help": "Task of `memoryr sweep`'s test evaluations of best/ and final/ (default: eval_task, else task), e.g. a jsonl: file of test problems every seed shares."})
    test_split: str = field(default="test", metadata={"help": "Split on which `memoryr sweep` evaluates best/ and final/ after training (the reported numbers)."})
    validation_size: int = field(default=200, metadata={"help": "Fixed sets (gsm8k, numina-tir, jsonl): problems carved from the end of the training split as the validation split (and removed from training)."})
    eval_limit: int = field(default=100, metadata={"help": "Held-out problems evaluated during training."})
    eval_at_start: bool = field(default=False, metadata={"help": "Also evaluate the untrained model before the first step (step 0 in evals.json: the 'before' figure; it may be chosen as best/)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Generation batch size of the in-training evaluation and of `memoryr sweep`'s test evaluations: larger is faster and takes more memory."})
    eval_share_prefix: bool = field(default=True, metadata={"help": "Run the start every evaluation prompt shares (system prompt and shots) through the model once per evaluation, not once per row: the same completions, up to float rounding, in a third of the time with 3 shots. Also used by `memoryr sweep`'s test evaluations."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir (memories included)."})
    share_prompt_prefix: bool = field(default=False, metadata={"help": "Pre-fill and run each distinct prompt once in generation and in the training forward/backward (same numbers, less work; needs gradient_checkpointing false)."})
    pack_decode_weights: bool = field(default=False, metadata={"help": "On CPU, decode with MKL-packed fp32 weights (faster at small batch; same arithmetic up to float rounding)."})


DATACLASSES = (ScriptArguments, GRPOConfig, ModelConfig)


def valid_keys() -> list[str]:
    """Every key a recipe or the command line may set."""
    return sorted({f.name for cls in DATACLASSES for f in fields(cls)})


def _check_keys(keys: list[str], where: str) -> None:
    valid = set(valid_keys())
    for key in keys:
        if key not in valid and key != "env":
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}; valid keys: {', '.join(sorted(valid))}")


def parse_config(argv: list[str]) -> tuple[ScriptArguments, GRPOConfig, ModelConfig]:
    """Parse `--config RECIPE.yaml` plus command-line overrides into the three dataclasses."""
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a path to a YAML recipe")
        path = Path(argv[i + 1])
        if not path.is_file():
            raise ConfigError(f"recipe {path} does not exist (recipes live in recipes/)")
        try:
            recipe = read_yaml(path)
        except ValueError as e:
            raise ConfigError(f"recipe {e}") from None
        if not isinstance(recipe, dict):
            raise ConfigError(f"recipe {path} must be a YAML mapping of key: value")
        _check_keys(list(recipe), str(path))
    flags = [a[2:].split("=")[0] for a in argv if a.startswith("--") and a != "--config"]
    _check_keys(flags, "the command line")
    parser = TrlParser(DATACLASSES)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):  # argparse prints usage + reason; we raise the reason alone
            script_args, training_args, model_args = parser.parse_args_and_config(argv)
    except SystemExit:
        raise ConfigError(_argparse_reason(printed.getvalue(), flags)) from None
    except ZeroDivisionError:  # TRL divides the generation batch by num_generations before any check of ours
        raise ConfigError("num_generations must be >= 2 (GRPO compares completions within a group), got 0") from None
    except ValueError as e:
        message = str(e).splitlines()[0]
        if "bf16/gpu" in message:
            message += " On a CPU machine use a *-cpu recipe or pass --bf16 false --use_cpu true."
        raise ConfigError(message) from None
    if model_args.model_name_or_path is None:
        raise ConfigError("no model: set model_name_or_path in the recipe or pass --model_name_or_path")
    if isinstance(script_args.task_config, dict):  # a YAML mapping in the recipe
        script_args.task_config = json.dumps(script_args.task_config)
    try:
        parse_task_config(script_args.task_config)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_ranges(script_args, training_args)
    _check_splits(script_args)
    _check_output_dir(Path(training_args.output_dir))
    if script_args.share_prompt_prefix and training_args.gradient_checkpointing:
        raise ConfigError("share_prompt_prefix needs gradient_checkpointing false: checkpointed layers drop the prompt's KV cache")
    return script_args, training_args, model_args


def _argparse_reason(printed: str, flags: list[str]) -> str:
    """argparse's reason, saying whether the bad value came from the recipe or the command line."""
    lines = [line for line in printed.strip().splitlines() if line.strip()]
    reason = lines[-1].split("error: ", 1)[-1] if lines else "invalid arguments"
    key = reason.split("argument --", 1)[-1].split("/", 1)[0].split(":", 1)[0] if "argument --" in reason else None
    where = "the command line" if key is None or key in flags else "the recipe"
    return f"{reason} (in {where}; `memoryr train --help-all` lists every key)"


def _check_ranges(script: ScriptArguments, training: GRPOConfig) -> None:
    """Every numeric and named setting in its range, before anything is loaded or written; the key in each message."""
    from memoryr.memory.encoder import is_device
    from memoryr.memory.rewards import MODES
    from memoryr.tasks.grading import GRADING_MODES
    from memoryr.tasks.prompts import EXEMPLARS, SYSTEM_PROMPTS

    def need(ok: bool, key: str, rule: str, value) -> None:
        if not ok:
            raise ConfigError(f"{key} must be {rule}, got {value!r}")

    need(training.num_generations is not None and training.num_generations >= 2, "num_generations",
         ">= 2 (GRPO compares completions within a group)", training.num_generations)
    need(training.max_steps > 0 or training.max_steps == -1, "max_steps",
         "> 0, or -1 to train for num_train_epochs", training.max_steps)
    need(training.num_train_epochs > 0, "num_train_epochs", "> 0", training.num_train_epochs)
    need(0 <= training.seed < 2**32, "seed", "between 0 and 2**32 - 1 (what numpy and torch accept)", training.seed)
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length", "logging_steps"):
        need(getattr(training, key) >= 1, key, ">= 1", getattr(training, key))
    need(training.temperature > 0, "temperature", "> 0 (GRPO samples its completions)", training.temperature)
    need(training.learning_rate >= 0, "learning_rate", ">= 0", training.learning_rate)
    need(training.save_steps > 0, "save_steps", "> 0", training.save_steps)
    need(training.eval_steps is None or training.eval_steps > 0, "eval_steps",
         "> 0 (or unset: evaluate at the end only)", training.eval_steps)
    for key in ("memory_k", "memory_max_keys", "memory_max_per_key", "memory_window", "eval_batch_size", "task_size"):
        need(getattr(script, key) >= 1, key, ">= 1", getattr(script, key))
    for key in ("memory_explore_warmup", "eval_limit", "shots"):
        need(getattr(script, key) >= 0, key, ">= 0", getattr(script, key))
    need(script.train_limit is None or script.train_limit >= 1, "train_limit", ">= 1 (or unset: all)", script.train_limit)
    need(not script.eval_at_start or script.eval_limit > 0, "eval_at_start",
         "false when eval_limit is 0 (there is nothing to evaluate)", script.eval_at_start)
    need(script.max_prompt_length is None or script.max_prompt_length >= 1, "max_prompt_length",
         ">= 1 (or unset: whole prompts)", script.max_prompt_length)
    need(script.cosine_max_len is None or script.cosine_max_len >= 1, "cosine_max_len",
         ">= 1 (the length at which the cosine reward reaches its end value)", script.cosine_max_len)
    for key in ("memory_beta_exploit", "memory_beta_explore", "memory_tau_success", "memory_tau_failure"):
        need(math.isfinite(getattr(script, key)), key, "a finite number", getattr(script, key))
    need(script.memory_mode in MODES, "memory_mode", f"one of {', '.join(MODES)}", script.memory_mode)
    need(script.grading in GRADING_MODES, "grading", f"one of {', '.join(GRADING_MODES)}", script.grading)
    need(script.exemplars in EXEMPLARS, "exemplars", f"one of {', '.join(EXEMPLARS)}", script.exemplars)
    need(script.system_prompt in SYSTEM_PROMPTS, "system_prompt", f"one of {', '.join(SYSTEM_PROMPTS)}",
         script.system_prompt)
    unknown = [name for name in script.permute_rewards if name not in script.reward_funcs]
    need(not unknown, "permute_rewards", f"names from reward_funcs ({', '.join(script.reward_funcs)})", unknown)
    need(is_device(script.encoder_device), "encoder_device", "auto or a torch device (cpu, cuda, cuda:0, ...)",
         script.encoder_device)


def _check_splits(args: ScriptArguments) -> None:
    """The in-training evaluation must not see training problems, and a validation split must hold some."""
    if (args.eval_task or args.task) == args.task and args.eval_split == args.train_split and args.eval_limit > 0:
        raise ConfigError(f"eval_split {args.eval_split!r} is the training split: evaluating there overlaps training; "
                          "use eval_split: validation")
    if args.validation_size < 0:
        raise ConfigError(f"validation_size must be >= 0, got {args.validation_size}")
    if args.eval_split == VALIDATION and args.eval_limit > 0 and args.validation_size < 1 and \
            not (args.eval_task or args.task).startswith("reasoning-gym:"):
        raise ConfigError("eval_split validation needs validation_size >= 1 (problems carved from the training split)")


def _check_output_dir(out: Path) -> None:
    """output_dir is a folder or can become one: no file where it, or a folder above it, must go."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"output_dir {out} cannot be a folder: {path} is a file")
            return


def resolved_config(script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> dict:
    """A JSON-ready record of every setting of a run."""
    return {
        "script": {f.name: getattr(script_args, f.name) for f in fields(script_args)},
        "training": json.loads(training_args.to_json_string()),
        "model": {f.name: getattr(model_args, f.name) for f in fields(model_args)},
    }
