"""Evaluation: greedy pass@1, or k samples per problem for pass@k and maj@k, resumable from a samples file.

Prompts are rendered exactly as in training (`build_prompt`) and each completion is graded on
`prefill + completion`. Generation is batched and left-padded with transformers (or vLLM on a GPU
when it is installed). With a samples file, every finished problem is appended as one JSON line,
so an interrupted evaluation picks up where it stopped and the metrics are always recomputed from
the file. `--shard K/N` runs every N-th batch from the K-th into a folder of its own, so N processes can share
one evaluation; the batches are those of the whole evaluation, so the completions are too, and the last shard
to finish merges them. A sample record holds: index, question, gold, completions (the generated text, pre-fill
not included), num_tokens (up to and including EOS), extracted and correct (one per completion).

`memoryr eval --preset NAME` sets a published protocol at once (`PRESETS`; flags given beside it
win). `paper-gsm8k`: the Memory-R paper's base-model GSM8K evaluation as its public code runs it
(0-shot, its XML system prompt, greedy, 200 new tokens, its answer extraction and exact string
match; the paper reports 27.8 for Qwen2.5-0.5B-Instruct). `qwen-gsm8k`: Qwen's math evaluation
(0-shot, "Please reason step by step, and put your final answer within \\boxed{}." as the system
prompt, greedy, 2048 new tokens, the last \\boxed{} answer compared by value; Qwen reports 49.6).
docs/paper-settings.md says where each comes from and what still differs.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from memoryr.jsonl_log import read_log
from memoryr.models import context_length
from memoryr.run_record import library_versions
from memoryr.tasks.data import DataError, Problem, load_problems, parse_task_config
from memoryr.tasks.grading import GRADING_MODES, grade, normalise
from memoryr.tasks.prompts import EXEMPLARS, SYSTEM_PROMPTS, build_prompt, check_prompt_lengths

if TYPE_CHECKING:
    from memoryr.evaluation.prompt_prefix import PromptPrefix

BACKENDS = ("auto", "transformers", "vllm")
BATCH_SIZE = 32  # `memoryr eval --batch-size`'s default
SAMPLE_FIELDS = {"index", "question", "gold", "completions", "num_tokens", "extracted", "correct"}
RESULTS_FORMAT_VERSION = 1
# results.json settings that decide what is generated and how it is graded: a resumed evaluation
# must match them all (limit and batch size may change between attempts).
RESUME_SETTINGS = ("model_path", "task", "split", "seed", "task_size", "task_config", "validation_size", "shots", "exemplars",
                   "system_prompt", "prefill", "grading", "max_new_tokens", "num_samples", "temperature")
RESUME_DEFAULTS = {"system_prompt": "xml", "validation_size": 200}  # settings that results.json files written before them lack


def recorded_settings(settings: dict) -> dict:
    """The RESUME_SETTINGS of a results.json's settings, with the defaults of the ones written before they existed."""
    return {k: settings.get(k, RESUME_DEFAULTS.get(k)) for k in RESUME_SETTINGS}


# Published evaluation protocols: the command-line defaults each sets (docs/paper-settings.md).
PRESETS = {
    "paper-gsm8k": {"task": "gsm8k", "split": "test", "shots": 0, "system_prompt": "reference", "prefill": "",
                    "grading": "reference", "max_new_tokens": 200, "num_samples": 1, "temperature": 0.0},
    "qwen-gsm8k": {"task": "gsm8k", "split": "test", "shots": 0, "system_prompt": "boxed", "prefill": "",
                   "grading": "boxed", "max_new_tokens": 2048, "num_samples": 1, "temperature": 0.0},
}


# ---------------------------------------------------------------- estimators


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021)'s unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent answer, grouping answers equal after `grading.normalise`; None answers do not vote.

    Ties go to the group whose first member appears earliest; the group's first member is returned.
    """
    groups: dict[str, tuple[int, str]] = {}  # normalised -> (count, first raw answer); dicts keep first-seen order
    for answer in answers:
        if answer is None:
            continue
        key = normalise(answer)
        count, first = groups.get(key, (0, answer))
        groups[key] = (count + 1, first)
    if not groups:
        return None
    best = max(groups.values(), key=lambda group: group[0])  # max keeps the earliest of equal counts
    return best[1]


def maj_at_k_correct(answers: list[str | None], correct: list[bool]) -> bool:
    """Whether the majority answer of k samples is correct (the verdict of the winning group's first member)."""
    if len(answers) != len(correct):
        raise ValueError(f"got {len(answers)} answers but {len(correct)} verdicts")
    voted = majority_vote(answers)
    return voted is not None and correct[answers.index(voted)]


def sample_metrics(records: list[dict]) -> dict:
    """n, pass@1, pass@j for powers of two j up to k and k itself, maj@k, parse rate and mean length, from sample records."""
    if not records:
        return {"n": 0}
    k = min(len(r["completions"]) for r in records)
    n = len(records)
    correct_counts = [sum(r["correct"][:k]) for r in records]
    metrics = {"n": n, "pass@1": sum(c / k for c in correct_counts) / n}
    if k > 1:
        ks = sorted({2**i for i in range(1, k.bit_length()) if 2**i < k} | {k})
        for j in ks:
            metrics[f"pass@{j}"] = sum(pass_at_k(k, c, j) for c in correct_counts) / n
        metrics[f"maj@{k}"] = sum(maj_at_k_correct(r["extracted"][:k], r["correct"][:k]) for r in records) / n
    extracted = [a for r in records for a in r["extracted"][:k]]
    metrics["parse_rate"] = sum(a is not None for a in extracted) / len(extracted)
    lengths = [t for r in records for t in r["num_tokens"][:k]]
    metrics["mean_length"] = sum(lengths) / len(lengths)
    return metrics


# ---------------------------------------------------------------- samples file


def read_samples(path: Path, repair: bool = False) -> dict[int, dict]:
    """Sample records by problem index ({} without the file), read as a log (`read_log`: a torn last
    line is dropped); `repair` before appending, so that a new record never follows a torn one."""
    if not path.exists():
        return {}
    return {r["index"]: r for r in read_log(path, fields=SAMPLE_FIELDS, error=DataError, repair=repair)}


def _check_recorded(records: dict[int, dict], problems: list[Problem], path: Path) -> None:
    for index, record in records.items():
        if index < len(problems) and record["question"] != problems[index].question:
            raise ValueError(f"{path} was written for other problems (index {index} differs); use another samples file")


# ---------------------------------------------------------------- generation backends


def _is_vllm(model) -> bool:
    return type(model).__module__.split(".")[0] == "vllm"


def _hf_generate(model, tokenizer, prompts, num_samples, temperature, max_new_tokens,
                 prefix: PromptPrefix | None = None, rows_leave: bool = True) -> list[list[tuple[str, int]]]:
    """(text, token count) of num_samples completions per prompt from one left-padded batch; with `prefix`, the
    prompts' shared start comes from its cache and only their remainders are pre-filled, and greedy decoding (with
    `rows_leave`) drops finished rows from the batch (`greedy_decode`); otherwise `generate` decodes it."""
    import torch
    from transformers import GenerationConfig

    from memoryr.evaluation.greedy_decode import greedy_decode
    from memoryr.evaluation.prompt_prefix import prefixed_batch

    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; load it with memoryr.models.load_tokenizer")
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids = sorted({tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None})
    sampling = {"temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 else {}
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        num_return_sequences=num_samples,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
        use_cache=True,
        cache_implementation="static",  # preallocated: no per-step torch.cat of the KV cache (~10% faster on CPU)
        disable_compile=True,  # a static cache would otherwise trigger torch.compile on GPUs, per batch shape
        **sampling,
    )
    device = next(model.parameters()).device
    if prefix is None:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        batch = batch.to(device)
    else:  # rows already repeated for the samples, into a cache of their own (generate would not repeat it)
        batch = {k: v.to(device) for k, v in prefixed_batch(tokenizer, prompts, prefix, num_samples).items()}
        config.num_return_sequences, config.cache_implementation = 1, None
        rows, width = batch["input_ids"].shape
        batch["cache"] = prefix.cache(model, rows, width + max_new_tokens)
    if prefix is not None and temperature == 0 and rows_leave:
        new_tokens = greedy_decode(model, batch["input_ids"], batch["attention_mask"], batch["cache"],
                                   max_new_tokens, eos_ids, tokenizer.pad_token_id).cpu()
    else:
        with torch.inference_mode():
            output = model.generate(**batch, generation_config=config)
        new_tokens = output[:, batch["input_ids"].shape[1] :].cpu()
    is_eos = torch.isin(new_tokens, torch.tensor(eos_ids))
    # A completion ends at (and includes) its first EOS; what follows is padding.
    lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, new_tokens.shape[1]).tolist()
    texts = tokenizer.batch_decode([row[:n] for row, n in zip(new_tokens, lengths)], skip_special_tokens=True)
    pairs = list(zip(texts, lengths))
    return [pairs[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def _vllm_generate(
    llm, tokenizer, prompts, num_samples, temperature, max_new_tokens, seed
) -> list[list[tuple[str, int]]]:
    """The same through a `vllm.LLM` (given token ids, so no second BOS is added), which schedules the batch itself."""
    from vllm import SamplingParams

    params = SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    outputs = llm.generate([{"prompt_token_ids": row} for row in ids], params, use_tqdm=False)
    return [[(c.text, len(c.token_ids)) for c in out.outputs] for out in outputs]


# ---------------------------------------------------------------- evaluation


def evaluate(
    model,
    tokenizer,
    problems: list[Problem],
    *,
    shots: int = 0,
    exemplars: str = "word",
    prefill: str = "",
    system_prompt: str = "xml",
    grading: str = "strict",
    batch_size: int = 16,
    max_new_tokens: int = 256,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    bar_position: int = 0,
    sample_path: Path | None = None,
    share_prefix: bool = True,
    rows_leave: bool = True,
    shard: tuple[int, int] = (1, 1),
) -> dict:
    """Generate for every problem (greedy when k=1 and temperature=0, else k samples) and grade them.

    `model` is a transformers causal LM (its train/eval mode and the global RNG are restored after)
    or a `vllm.LLM`. `batch_size` counts sequences per `generate` call, so batch_size // k problems
    go in together, longest prompts first; shard (K, N) runs only batches K, K + N, ... of them, the batches an
    evaluation of every problem would run. Returns `sample_metrics` of the shard's problems; with
    `sample_path`, problems already recorded there are skipped and new ones appended. Sampling is
    seeded per batch (seed + index of its first problem). With `share_prefix` (transformers models), the
    tokens all prompts start with are run once (`prompt_prefix`), not once per row, and greedy decoding drops finished
    rows from the batch (`rows_leave`, `greedy_decode`). The progress bar goes on
    console line `bar_position`: 1 puts it below a training bar, and clears it when done.
    """
    import torch
    from tqdm.auto import tqdm

    from memoryr.evaluation.prompt_prefix import prompt_prefix

    if grading not in GRADING_MODES:
        raise ValueError(f"unknown grading mode {grading!r}; choose one of {', '.join(GRADING_MODES)}")
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("num_samples, batch_size and max_new_tokens must be at least 1")
    if temperature < 0 or (num_samples > 1 and temperature == 0):
        raise ValueError(f"k={num_samples} samples need a temperature > 0 (got {temperature})")
    records: dict[int, dict] = {}
    if sample_path is not None:
        records = read_samples(Path(sample_path), repair=True)
        _check_recorded(records, problems, Path(sample_path))
    prompts = [build_prompt(tokenizer, p.question, shots, exemplars, prefill, system_prompt) for p in problems]
    order = sorted(range(len(problems)), key=lambda i: -len(prompts[i]))  # similar lengths share a batch; longest first
    per_call = max(1, batch_size // num_samples)
    # the batches of the whole evaluation, whatever is recorded: a resumed or sharded one runs the same ones
    batches = [order[start : start + per_call] for start in range(0, len(order), per_call)][shard[0] - 1 :: shard[1]]
    mine = sorted(i for batch in batches for i in batch)
    batches = [chunk for batch in batches if (chunk := [i for i in batch if i not in records])]
    vllm = _is_vllm(model)
    was_training = False if vllm else model.training
    cuda = [] if vllm or next(model.parameters()).device.type != "cuda" else [next(model.parameters()).device.index]
    bar = tqdm(total=len(mine), initial=len(mine) - sum(map(len, batches)), desc="eval", unit="problem",
               disable=not progress, position=bar_position, leave=bar_position == 0)
    try:
        if not vllm:
            model.eval()
        prefix = None
        if share_prefix and not vllm and len(problems) > 1 and batches:  # from every prompt, as batches are
            prefix = prompt_prefix(model, tokenizer(prompts, add_special_tokens=False)["input_ids"])
        with torch.random.fork_rng(devices=cuda):
            for chunk in batches:
                texts = [prompts[i] for i in chunk]
                torch.manual_seed(seed + chunk[0])
                if vllm:
                    outputs = _vllm_generate(
                        model, tokenizer, texts, num_samples, temperature, max_new_tokens, seed + chunk[0]
                    )
                else:
                    outputs = _hf_generate(model, tokenizer, texts, num_samples, temperature, max_new_tokens, prefix,
                                           rows_leave)
                new = [_record(i, problems[i], samples, prefill, grading) for i, samples in zip(chunk, outputs)]
                records.update((r["index"], r) for r in new)
                if sample_path is not None:
                    with open(sample_path, "a", encoding="utf-8") as f:
                        f.writelines(json.dumps(r) + "\n" for r in new)
                bar.update(len(chunk))
    finally:
        bar.close()
        if not vllm:
            model.train(was_training)
    return sample_metrics([records[i] for i in mine])


def _record(index: int, problem: Problem, samples: list[tuple[str, int]], prefill: str, grading: str) -> dict:
    graded = [grade(prefill + text, problem.answer, grading) for text, _ in samples]
    return {
        "index": index,
        "question": problem.question,
        "gold": problem.answer,
        "completions": [text for text, _ in samples],
        "num_tokens": [n for _, n in samples],
        "extracted": [extracted for extracted, _ in graded],
        "correct": [correct for _, correct in graded],
    }


# ---------------------------------------------------------------- command line


def resolve_eval_model(name: str) -> str:
    """A loadable model from an alias, hub id, model folder, or memoryr run folder (its final/ or newest checkpoint)."""
    from memoryr.models import resolve_model

    path = Path(name).expanduser()
    if not path.is_dir():
        return resolve_model(name)

    def is_model(folder: Path) -> bool:
        return (folder / "config.json").exists() or (folder / "adapter_config.json").exists()

    if is_model(path):
        return resolve_model(str(path))
    if is_model(path / "final"):
        return resolve_model(str(path / "final"))
    checkpoints = [p for p in path.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and is_model(p)]
    if checkpoints:
        return resolve_model(str(max(checkpoints, key=lambda p: int(p.name.split("-")[-1]))))
    if (path / "run.json").exists():
        raise FileNotFoundError(f"run folder {path} has no final/ model and no checkpoint-* folder yet")
    raise FileNotFoundError(f"{path} is neither a model folder (config.json) nor a memoryr run folder (run.json)")


def choose_backend(backend: str) -> str:
    """vllm when asked, or on 'auto' when vllm is importable and CUDA is available; else transformers."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not has_vllm:
        raise ValueError("--backend vllm needs the vllm package and a CUDA GPU")
    return "vllm" if backend == "vllm" or (backend == "auto" and has_vllm) else "transformers"


def load_for_eval(model_path: str, backend: str, seed: int):
    """(model, tokenizer) for `evaluate`: a transformers model on the GPU if there is one, or a vllm.LLM."""
    import torch
    from transformers import AutoModelForCausalLM

    from memoryr.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_path)
        if backend == "vllm":
            from vllm import LLM

            return LLM(model=model_path, seed=seed), tokenizer
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    except OSError as e:  # neither a local model folder nor a reachable hub id
        raise FileNotFoundError(f"cannot load model {model_path!r}: {str(e).splitlines()[0]}") from None
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tokenizer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoryr eval",
        description="Evaluate a model on a math task: greedy pass@1, or --num-samples k for pass@k and maj@k. "
        "Writes OUTPUT/results.json and OUTPUT/samples.jsonl; rerunning with the same OUTPUT and settings "
        "resumes an interrupted evaluation.",
        epilog="example: memoryr eval --model runs/demo --task gsm8k --limit 100 --shots 1 "
        "--prefill '<reasoning>\\n' --output runs/demo/eval-gsm8k",
    )
    parser.add_argument("--model", required=True, help="model alias, hub id, model folder, or memoryr run/checkpoint folder")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a published protocol's settings (flags given beside it win): paper-gsm8k, the Memory-R "
                        "paper's base-model GSM8K evaluation; qwen-gsm8k, Qwen's (see docs/paper-settings.md)")
    parser.add_argument("--task", help="gsm8k, math500, aime24, reasoning-gym:<task> or jsonl:PATH (required without --preset)")
    parser.add_argument("--split", default="test",
                        help="split of the task (default: test); validation is carved from the training data, as in training")
    parser.add_argument("--validation-size", type=int, default=200,
                        help="fixed sets: problems at the end of the training split that form the validation split "
                        "(the run's validation_size; default 200)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    parser.add_argument("--data-dir", default=None, help="folder with gsm8k/, math500/, aime24/ (default: MEMORYR_DATA_DIR)")
    parser.add_argument("--output", required=True, type=Path, help="folder for results.json and samples.jsonl")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"sequences per generate call (default: {BATCH_SIZE})")
    parser.add_argument("--num-samples", type=int, default=1, help="k completions per problem (k > 1 needs --temperature)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 with k=1 is greedy")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="completion length limit (default: 256)")
    parser.add_argument("--shots", type=int, default=0, help="worked exemplars before the question (0-3)")
    parser.add_argument("--exemplars", default="word", choices=sorted(EXEMPLARS), help="exemplar set (default: word)")
    parser.add_argument("--system-prompt", default="xml", choices=list(SYSTEM_PROMPTS),
                        help="xml (default), reference (the Memory-R code's text) or boxed (Qwen's \\boxed{} instruction)")
    parser.add_argument(
        "--prefill", default="", help="text that starts the assistant turn; a typed \\n is a newline, e.g. '<reasoning>\\n'"
    )
    parser.add_argument("--grading", default="strict", choices=GRADING_MODES,
                        help="strict (<answer> tag, default), last_number, reference (exact match) or boxed")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and reasoning-gym generator seed)")
    parser.add_argument("--task-size", type=int, default=1000, help="reasoning-gym: problems generated per split (default 1000)")
    parser.add_argument("--task-config", default=None, help="reasoning-gym: JSON object of generator options, as in recipes")
    parser.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="auto: vllm when installed with CUDA, else transformers"
    )
    parser.add_argument("--shard", metavar="K/N",
                        help="evaluate only the K-th of N shares of the batches, into OUTPUT/shard-K-of-N/ (N processes "
                        "on N cores share one evaluation); the last shard to finish writes OUTPUT/results.json and "
                        "samples.jsonl, the same as one process would. Without --shard, an evaluation takes in what "
                        "OUTPUT's shard folders recorded")
    parser.add_argument("--share-prefix", default="true", choices=["true", "false"],
                        help="run the start all prompts share (system prompt and shots) once, not once per row "
                        "(transformers backend; the same completions up to float rounding, ~3x faster with 3 shots; "
                        "default: true)")
    return parser


def parse_eval_args(argv: list[str]) -> argparse.Namespace:
    """`memoryr eval` arguments, a `--preset`'s settings standing in for the flags not given."""
    parser = _parser()
    preset = parser.parse_args(argv).preset
    if preset:
        parser.set_defaults(**PRESETS[preset])
    args = parser.parse_args(argv)
    if args.task is None:
        parser.error("--task is required (or a --preset that sets it)")
    _check_ranges(args)
    if args.shard is not None:
        args.shard = tuple(int(part) for part in args.shard.split("/"))
    return args


def _check_ranges(args: argparse.Namespace) -> None:
    """Every number in its range before results.json is written or the model loaded; the flag in each message."""

    def need(ok: bool, flag: str, rule: str, value) -> None:
        if not ok:
            raise ValueError(f"{flag} must be {rule}, got {value!r}")

    need(args.limit is None or args.limit >= 1, "--limit", ">= 1 (or absent: every problem)", args.limit)
    for flag in ("--batch-size", "--max-new-tokens", "--num-samples", "--task-size"):
        value = getattr(args, flag[2:].replace("-", "_"))
        need(value >= 1, flag, ">= 1", value)
    need(args.validation_size >= 0, "--validation-size", ">= 0", args.validation_size)
    need(0 <= args.seed < 2**32, "--seed", "between 0 and 2**32 - 1 (what numpy and torch accept)", args.seed)
    need(args.temperature >= 0 and math.isfinite(args.temperature), "--temperature", ">= 0 and finite", args.temperature)
    if args.num_samples > 1 and args.temperature == 0:
        raise ValueError(f"--num-samples {args.num_samples} needs --temperature > 0: greedy decoding would give "
                         f"{args.num_samples} equal samples")
    if args.shard is not None:
        k, _, n = args.shard.partition("/")
        need(k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n), "--shard", "K/N with 1 <= K <= N, e.g. 1/2",
             args.shard)
    shots = len(EXEMPLARS[args.exemplars])
    need(0 <= args.shots <= shots, "--shots", f"between 0 and {shots} for exemplar set {args.exemplars!r}", args.shots)


def eval_cli(argv: list[str]) -> None:
    """`memoryr eval`: evaluate a model on a task and write results.json + samples.jsonl (resumable)."""
    args = parse_eval_args(argv)
    prefill = args.prefill.replace("\\n", "\n")  # a typed backslash-n means a newline
    settings = {
        "model": args.model,
        "model_path": resolve_eval_model(args.model),
        "task": args.task,
        "split": args.split,
        "limit": args.limit,
        "seed": args.seed,
        "task_size": args.task_size,
        "task_config": args.task_config,
        "validation_size": args.validation_size,
        "shots": args.shots,
        "exemplars": args.exemplars,
        "system_prompt": args.system_prompt,
        "prefill": prefill,
        "grading": args.grading,
        "max_new_tokens": args.max_new_tokens,
        "num_samples": args.num_samples,
        "temperature": args.temperature,
        "batch_size": args.batch_size,
        "backend": choose_backend(args.backend),
        "share_prefix": args.share_prefix == "true",
        "preset": args.preset,
    }
    out: Path = args.output
    _check_resumable(out, settings)
    shard_out = out / f"shard-{args.shard[0]}-of-{args.shard[1]}" if args.shard else None
    if shard_out is not None:
        _check_resumable(shard_out, settings)
    problems = load_problems(args.task, args.split, data_dir_setting=args.data_dir, limit=args.limit, seed=args.seed,
                             size=args.task_size, task_config=parse_task_config(args.task_config),
                             validation_size=args.validation_size)
    if shard_out is None:
        _evaluate_into(out, settings, problems, args)
        return
    k, n = args.shard
    _evaluate_into(shard_out, {**settings, "shard": f"{k}/{n}"}, problems, args, shard=(k, n))
    with _merging(out):  # shards finishing at once: one merges, the other finds it done
        done = set(read_samples(out / "samples.jsonl")) | set(shard_records(out, settings, problems)[0])
        if len(done & set(range(len(problems)))) == len(problems):
            _evaluate_into(out, settings, problems, args)
        else:
            print(f"shard {k}/{n} done; the shards of {out} hold {len(done)} of {len(problems)} problems so far, "
                  "and the last one to finish writes its results.json (or run without --shard to finish it)")


def _check_resumable(out: Path, settings: dict) -> None:
    """Refuse an output folder that holds an evaluation with other settings (or samples without results.json)."""
    results_path, samples_path = out / "results.json", out / "samples.jsonl"
    if samples_path.exists():
        if not results_path.exists():
            raise FileNotFoundError(f"{samples_path} has no results.json beside it; remove it or choose another --output")
        before = recorded_settings(json.loads(results_path.read_text()).get("settings", {}))
        changed = [k for k in RESUME_SETTINGS if before[k] != settings[k]]
        if changed:
            diff = ", ".join(f"{k}: {before[k]!r} -> {settings[k]!r}" for k in changed)
            raise ValueError(f"{out} holds an evaluation with other settings ({diff}); choose another --output")


def shard_records(out: Path, settings: dict, problems: list[Problem]) -> tuple[dict[int, dict], list[dict]]:
    """What the shard folders of `out` (`shard-K-of-N/`, `memoryr eval --shard`) recorded with these settings: the
    sample records of these problems by index, and the timing of each finished shard."""
    records, timings = {}, []
    for folder in sorted(out.glob("shard-*-of-*")):
        try:
            results = json.loads((folder / "results.json").read_text())
        except (FileNotFoundError, ValueError):  # never started, or cut off while writing it: its samples stay out
            continue
        if recorded_settings(results.get("settings", {})) != recorded_settings(settings):
            continue
        for index, record in read_samples(folder / "samples.jsonl").items():
            if index < len(problems) and record["question"] == problems[index].question:
                records[index] = record
        if results.get("status") == "complete":
            timings.append(results["timing"])
    return records, timings


@contextmanager
def _merging(out: Path) -> Iterator[None]:
    """An exclusive lock on `out` while shards are merged into it (blocking: merging takes a moment)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".merge.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


def _evaluate_into(out: Path, settings: dict, problems: list[Problem], args: argparse.Namespace,
                   shard: tuple[int, int] = (1, 1)) -> None:
    """Evaluate (a shard of) the problems into `out`, resuming what it recorded; a whole evaluation first takes in
    what its shard folders recorded, and loads no model when they hold every problem."""
    results_path, samples_path = out / "results.json", out / "samples.jsonl"
    taken, timings = shard_records(out, settings, problems) if shard == (1, 1) else ({}, [])
    whole = not set(range(len(problems))) - set(read_samples(samples_path)) - set(taken)
    model = tokenizer = None
    if not whole or shard != (1, 1):
        model, tokenizer = load_for_eval(settings["model_path"], settings["backend"], args.seed)
        prompts = [build_prompt(tokenizer, p.question, args.shots, args.exemplars, settings["prefill"], args.system_prompt)
                   for p in problems]
        check_prompt_lengths(prompts, tokenizer, context_length(settings["model_path"]), args.max_new_tokens,
                             what="evaluation prompts", budget="--max-new-tokens",
                             fix="lower --max-new-tokens to leave them room, or remove those problems")
    # written after the model loaded: a model that fails to load leaves the output folder as it was
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "format_version": RESULTS_FORMAT_VERSION,
        "status": "running",
        "task": args.task,
        "split": args.split,
        "model": args.model,
        "settings": settings,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
    }
    results_path.write_text(json.dumps(record, indent=2))
    done_before = set(read_samples(samples_path, repair=True))  # here, so evaluate's own read warns no second time
    if taken.keys() - done_before:
        with open(samples_path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(taken[i]) + "\n" for i in sorted(taken.keys() - done_before))
        record["from_shards"] = sorted(p.name for p in out.glob("shard-*-of-*"))
    began = time.perf_counter()
    try:
        if model is None:
            records = read_samples(samples_path)
            metrics = sample_metrics([records[i] for i in range(len(problems))])
        else:
            metrics = evaluate(model, tokenizer, problems, shots=args.shots, exemplars=args.exemplars,
                               prefill=settings["prefill"], system_prompt=args.system_prompt, grading=args.grading,
                               batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                               num_samples=args.num_samples, temperature=args.temperature, seed=args.seed,
                               sample_path=samples_path, share_prefix=settings["share_prefix"], shard=shard)
    except BaseException:  # Ctrl-C or an error: say so, not "running" (rerunning the command resumes it)
        record.update(status="interrupted", interrupted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        results_path.write_text(json.dumps(record, indent=2))
        raise
    seconds = time.perf_counter() - began + sum(t["seconds"] for t in timings)
    new = [r for i, r in read_samples(samples_path).items()
           if (i not in done_before or i in taken) and i < len(problems)]
    tokens = sum(sum(r["num_tokens"]) for r in new)
    record.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        metrics=metrics,
        timing={
            "seconds": round(seconds, 2),
            "problems_generated": len(new),
            "completion_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        },
    )
    results_path.write_text(json.dumps(record, indent=2))
    print(format_summary(record))


def format_summary(record: dict) -> str:
    """A few lines: task, model, the metrics in %, timing and where the files are."""
    m = record["metrics"]
    scores = "  ".join(f"{k} {100 * v:.1f}%" for k, v in m.items() if k.startswith(("pass@", "maj@")) or k == "parse_rate")
    t = record["timing"]
    path = record["settings"]["model_path"]
    model = record["model"] if path in (record["model"], str(Path(record["model"]))) else f"{record['model']} ({path})"
    preset = record["settings"].get("preset")
    protocol = f"  preset {preset}" if preset else ""
    return (
        f"{record['task']} ({record['split']})  model {model}  n={m['n']}{protocol}\n"
        f"{scores}  mean length {m.get('mean_length', 0):.0f} tokens\n"
        f"generated {t['problems_generated']} problems in {t['seconds']:.1f} s ({t['tokens_per_s']} tokens/s)"
    )
