"""`memoryr bench eval`: where a greedy evaluation's time goes, per generation path, on the same problems and model.

Each variant evaluates the same problems through `evaluate`: `shared` (the tokens all prompts start with are
run once, `prompt_prefix`, and finished rows leave the batch, `greedy_decode`), `shared-generate` (the same prefix,
decoded by `generate`), `plain` (every row pre-fills its whole prompt, the path before the shared prefix) and
`batch-1` (one problem per `generate` call). Forward hooks on the model split the time into pre-fill (calls with
more than one new token) and decoding (one token per row), and count the tokens each processes: pre-filled
tokens, decoded row-tokens (rows keep decoding until the batch's last one ends) against the tokens the
completions needed after their first (up to EOS; the first comes from the pre-fill): the padding waste. Variants after the first are checked for the same
completions. The defaults are study 2's test evaluation (500 problems, 3 `arith1` shots, batch 32, 96 tokens);
threads come from OMP_NUM_THREADS. It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from memoryr.evaluation.evaluate import evaluate, load_for_eval, read_samples, resolve_eval_model
from memoryr.tasks.data import load_problems, parse_task_config

VARIANTS = {"shared": {"share_prefix": True}, "shared-generate": {"share_prefix": True, "rows_leave": False},
            "plain": {"share_prefix": False}, "batch-1": {"share_prefix": False, "batch_size": 1}}
STUDY2_TASK = ('{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"], '
               '"allow_parentheses": false, "allow_negation": false}')


class ForwardClock:
    """Times the model's forward calls, split into pre-fill (several new tokens per row) and decoding (one)."""

    def __init__(self, model):
        self.parts = {"prefill_s": 0.0, "prefill_tokens": 0, "decode_s": 0.0, "decode_steps": 0, "decode_rows": 0}
        self._start = 0.0
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after, with_kwargs=True)

    def _before(self, module, args, kwargs):
        self._start = time.perf_counter()
        self._shape = kwargs["input_ids"].shape

    def _after(self, module, args, kwargs, output):
        seconds = time.perf_counter() - self._start
        rows, tokens = self._shape
        if tokens > 1:
            self.parts["prefill_s"] += seconds
            self.parts["prefill_tokens"] += rows * tokens
        else:
            self.parts.update(decode_s=self.parts["decode_s"] + seconds, decode_steps=self.parts["decode_steps"] + 1,
                              decode_rows=self.parts["decode_rows"] + rows)

    def take(self) -> dict:
        parts, self.parts = self.parts, dict.fromkeys(self.parts, 0)
        return parts


def run_variant(name: str, model, tokenizer, problems, clock: ForwardClock, prompt: dict, batch_size: int,
                max_new_tokens: int, folder: Path) -> dict:
    """One timed evaluation; its seconds, forward-call split, token counts and completions."""
    settings = {"batch_size": batch_size, **VARIANTS[name]}
    path = folder / f"{name}.jsonl"
    clock.take()
    began = time.perf_counter()
    metrics = evaluate(model, tokenizer, problems, max_new_tokens=max_new_tokens, progress=False, sample_path=path,
                       seed=0, **prompt, **settings)
    seconds = time.perf_counter() - began
    records = read_samples(path)
    needed = sum(r["num_tokens"][0] for r in records.values())
    parts = clock.take()
    decoded = needed - len(records)  # each completion's first token comes from the pre-fill
    return {"variant": name, "seconds": seconds, **parts, "needed_tokens": needed,
            "padding_waste": 1 - decoded / parts["decode_rows"] if parts["decode_rows"] else 0.0,
            "tokens_per_s": needed / seconds, "pass@1": metrics["pass@1"],
            "completions": [records[i]["completions"][0] for i in range(len(problems))]}


def format_eval_bench(results: list[dict]) -> str:
    """A markdown table of the variants, with each one's speed-up over the first."""
    lines = ["| variant | wall s | pre-fill s (tokens) | decode s (steps, row-tokens) | tokens needed | padding waste "
             "| tokens/s | pass@1 | x first |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['seconds']:.1f} | {r['prefill_s']:.1f} ({r['prefill_tokens']}) | "
                     f"{r['decode_s']:.1f} ({r['decode_steps']}, {r['decode_rows']}) | {r['needed_tokens']} | "
                     f"{100 * r['padding_waste']:.0f}% | {r['tokens_per_s']:.0f} | {100 * r['pass@1']:.1f}% | "
                     f"{results[0]['seconds'] / r['seconds']:.2f}x |")
    return "\n".join(lines)


def bench_eval_cli(argv: list[str]) -> None:
    """`memoryr bench eval`: evaluation paths timed and checked against each other."""
    parser = argparse.ArgumentParser(prog="memoryr bench eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model alias, id, folder or run folder")
    parser.add_argument("--task", default="reasoning-gym:basic_arithmetic", help="task (default: study 2's)")
    parser.add_argument("--task-config", default=STUDY2_TASK, help="reasoning-gym options (default: study 2's)")
    parser.add_argument("--task-size", type=int, default=2000, help="reasoning-gym problems per split (default 2000)")
    parser.add_argument("--split", default="test", help="split (default: test)")
    parser.add_argument("--seed", type=int, default=1, help="the problems' seed (default 1)")
    parser.add_argument("--n", type=int, default=500, help="problems (default 500)")
    parser.add_argument("--shots", type=int, default=3, help="exemplars in the prompt (default 3)")
    parser.add_argument("--exemplars", default="arith1", help="exemplar set (default arith1)")
    parser.add_argument("--prefill", default="<reasoning>\\n", help="assistant pre-fill (default '<reasoning>\\n')")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generate call (default 32)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="completion length limit (default 96)")
    parser.add_argument("--variants", nargs="+", default=["shared", "plain"], choices=list(VARIANTS),
                        help="generation paths to time, the first the reference (default: shared plain)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import torch

    for name in ("n", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    model, tokenizer = load_for_eval(resolve_eval_model(args.model), "transformers", seed=0)
    problems = load_problems(args.task, args.split, limit=args.n, seed=args.seed, size=args.task_size,
                             task_config=parse_task_config(args.task_config))
    prompt = {"shots": args.shots, "exemplars": args.exemplars, "prefill": args.prefill.replace("\\n", "\n")}
    clock = ForwardClock(model)
    evaluate(model, tokenizer, problems[:2], max_new_tokens=4, progress=False, **prompt)  # warm-up
    with tempfile.TemporaryDirectory() as folder:
        results = [run_variant(name, model, tokenizer, problems, clock, prompt, args.batch_size, args.max_new_tokens,
                               Path(folder)) for name in args.variants]
    print(format_eval_bench(results))
    for other in results[1:]:
        differ = [i for i, (a, b) in enumerate(zip(results[0]["completions"], other["completions"])) if a != b]
        print(f"{other['variant']} against {results[0]['variant']}: "
              + (f"completions differ at problems {differ}" if differ else f"the same {len(problems)} completions"))
    print(f"{torch.get_num_threads()} thread(s); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if args.json is not None:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "completions"} for r in results],
                                        indent=2))
