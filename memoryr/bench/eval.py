"""Benchmark: batched, left-padded evaluation against a batch-1 loop on the same questions and model.

Both runs go through `evaluate` (greedy, the 1-shot + pre-fill prompt the CPU recipes use) and
count only real completion tokens (up to EOS), so tokens/s is useful throughput. It prints figures
and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from memoryr.evaluation.evaluate import evaluate, load_for_eval, read_samples, resolve_eval_model
from memoryr.tasks.data import load_problems

PROMPT = {"shots": 1, "exemplars": "word", "prefill": "<reasoning>\n"}


def _timed_eval(model, tokenizer, problems, batch_size: int, max_new_tokens: int, folder: Path) -> dict:
    """Seconds, completion tokens, tokens/s and extracted answers of one evaluation."""
    path = folder / f"samples-b{batch_size}.jsonl"
    began = time.perf_counter()
    metrics = evaluate(
        model, tokenizer, problems, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False,
        sample_path=path, **PROMPT,
    )
    seconds = time.perf_counter() - began
    records = read_samples(path)
    tokens = sum(r["num_tokens"][0] for r in records.values())
    answers = [records[i]["extracted"][0] for i in range(len(problems))]
    return {
        "batch_size": batch_size,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "pass@1": metrics["pass@1"],
        "answers": answers,
    }


def bench_eval(
    model: str = "smollm2-135m-instruct",
    n: int = 32,
    batch_size: int = 32,
    max_new_tokens: int = 128,
    task: str = "gsm8k",
) -> dict:
    """Time batched eval vs a batch-1 loop on the first n test questions of `task`; returns and prints the figures."""
    import torch

    llm, tokenizer = load_for_eval(resolve_eval_model(model), "transformers", seed=0)
    problems = load_problems(task, "test", limit=n)
    evaluate(llm, tokenizer, problems[:1], max_new_tokens=4, progress=False, **PROMPT)  # warm-up
    with tempfile.TemporaryDirectory() as folder:
        batched = _timed_eval(llm, tokenizer, problems, batch_size, max_new_tokens, Path(folder))
        single = _timed_eval(llm, tokenizer, problems, 1, max_new_tokens, Path(folder))
    same = sum(a == b for a, b in zip(batched.pop("answers"), single.pop("answers")))
    result = {
        "model": model,
        "task": task,
        "n": len(problems),
        "max_new_tokens": max_new_tokens,
        "threads": torch.get_num_threads(),
        "device": str(llm.device),
        "batched": batched,
        "batch_1": single,
        "speedup": single["seconds"] / batched["seconds"],
        "same_answers": same,
    }
    for run in (batched, single):
        print(f"batch {run['batch_size']:>3}: {run['seconds']:7.1f} s  {run['tokens']:>6} tokens  "
              f"{run['tokens_per_s']:6.1f} tokens/s  pass@1 {100 * run['pass@1']:.1f}%")
    print(f"speedup {result['speedup']:.2f}x wall time; same extracted answer on {same}/{len(problems)} problems; "
          f"{result['threads']} threads on {result['device']}")
    return result


def bench_eval_cli(argv: list[str]) -> None:
    """`memoryr bench eval`: batched vs batch-1 evaluation throughput."""
    parser = argparse.ArgumentParser(prog="memoryr bench eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model alias, id, folder or run folder")
    parser.add_argument("--task", default="gsm8k", help="task whose first N test questions are used (default: gsm8k)")
    parser.add_argument("--n", type=int, default=32, help="number of questions (default: 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the batched run (default: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="completion length limit (default: 128)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = bench_eval(args.model, args.n, args.batch_size, args.max_new_tokens, args.task)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
