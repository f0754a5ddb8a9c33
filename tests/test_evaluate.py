"""Evaluation: the pass@k / maj@k estimators by hand, evaluation on tiny-random, resuming, and the CLI."""

import json
from pathlib import Path

import pytest
import torch

from memoryr.evaluation.evaluate import (
    PRESETS,
    eval_cli,
    evaluate,
    maj_at_k_correct,
    majority_vote,
    parse_eval_args,
    pass_at_k,
    read_samples,
    resolve_eval_model,
    sample_metrics,
)
from memoryr.tasks.data import DataError, Problem

PROBLEMS = [Problem(f"What is {a} + {b}?", str(a + b)) for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]]


# ---------------------------------------------------------------- estimators


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 1, 0.3),  # pass@1 is c/n
        (4, 0, 2, 0.0),
        (4, 4, 1, 1.0),
        (3, 2, 2, 1.0),  # fewer wrong samples than k: always passes
        (8, 1, 4, 1 - 35 / 70),  # 1 - C(7,4)/C(8,4)
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_majority_vote_groups_equivalent_answers_and_breaks_ties_by_first_appearance():
    assert majority_vote(["7", "1,000", "1000", "7", "$1000"]) == "1,000"  # 3 votes for 1000 beat 2 for 7
    assert majority_vote(["7", "1,000", None, "1000.", "7"]) == "7"  # 2-2 tie: 7 appeared first
    assert majority_vote(["5", None, None]) == "5"  # unparsed answers do not vote
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_maj_at_k_correct_uses_the_winning_group():
    assert maj_at_k_correct(["7", "8", "8"], [True, False, False]) is False
    assert maj_at_k_correct(["8", "7", "7."], [False, True, True]) is True
    assert maj_at_k_correct([None, None], [False, False]) is False
    with pytest.raises(ValueError):
        maj_at_k_correct(["1"], [True, False])


def test_sample_metrics_by_hand():
    records = [
        {"extracted": ["3", "5", "5", None], "correct": [True, False, False, False], "num_tokens": [10, 20, 30, 40]},
        {"extracted": ["9", "9", "8", "8."], "correct": [True, True, False, False], "num_tokens": [5, 5, 5, 5]},
    ]
    m = sample_metrics([{**r, "completions": ["x"] * 4} for r in records])
    assert m["n"] == 2
    assert m["pass@1"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert m["pass@2"] == pytest.approx(((1 - 3 / 6) + (1 - 1 / 6)) / 2)  # C(3,2)/C(4,2), C(2,2)/C(4,2)
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["maj@4"] == pytest.approx(0.5)  # "5" wins (wrong); "9" ties "8" and comes first (right)
    assert m["parse_rate"] == pytest.approx(7 / 8)
    assert m["mean_length"] == pytest.approx(120 / 8)


# ---------------------------------------------------------------- evaluation on tiny-random


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from transformers import AutoModelForCausalLM

    from memoryr.models import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_path), load_tokenizer(tiny_model_path)


class GenerateCounter:
    """Wraps the evaluation's generation (`generate` or the greedy loop) to count the prompts it is asked to complete."""

    def __init__(self, monkeypatch):
        import memoryr.evaluation.evaluate as evaluation

        self.prompts = 0
        original = evaluation._hf_generate

        def counting(model, tokenizer, prompts, *args, **kwargs):
            self.prompts += len(prompts)
            return original(model, tokenizer, prompts, *args, **kwargs)

        monkeypatch.setattr(evaluation, "_hf_generate", counting)


def test_greedy_eval_writes_samples_and_leaves_no_side_effects(tiny, tmp_path):
    model, tokenizer = tiny
    model.train()
    rng = torch.get_rng_state()
    path = tmp_path / "samples.jsonl"
    m = evaluate(model, tokenizer, PROBLEMS[:3], batch_size=2, max_new_tokens=6, prefill="<answer>", progress=False,
                 sample_path=path)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert m["n"] == 3 and set(m) == {"n", "pass@1", "parse_rate", "mean_length"}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert {"question", "gold", "completions", "extracted", "correct", "num_tokens"} <= set(rows[0])
    assert all(len(r["completions"]) == 1 and 1 <= r["num_tokens"][0] <= 6 for r in rows)
    assert rows[1]["gold"] == "7" and rows[1]["question"] == PROBLEMS[1].question


def test_sampling_k_per_problem_is_seeded(tiny):
    model, tokenizer = tiny
    kwargs = dict(batch_size=8, max_new_tokens=5, num_samples=4, temperature=1.0, progress=False)
    m = evaluate(model, tokenizer, PROBLEMS[:2], seed=3, **kwargs)
    assert {"pass@1", "pass@2", "pass@4", "maj@4", "parse_rate"} <= set(m)
    assert m == evaluate(model, tokenizer, PROBLEMS[:2], seed=3, **kwargs)
    with pytest.raises(ValueError, match="temperature"):
        evaluate(model, tokenizer, PROBLEMS[:2], num_samples=4, temperature=0.0)


def test_interrupted_eval_resumes_with_only_the_missing_problems(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    path = tmp_path / "samples.jsonl"
    kwargs = dict(batch_size=2, max_new_tokens=4, progress=False, sample_path=path)
    evaluate(model, tokenizer, PROBLEMS[:2], **kwargs)  # "interrupted" after two problems ...
    with open(path, "a") as f:
        f.write('{"index": 2, "question": "What is')  # ... in the middle of writing the third
    counter = GenerateCounter(monkeypatch)
    m = evaluate(model, tokenizer, PROBLEMS, **kwargs)
    assert counter.prompts == 3 and m["n"] == 5
    assert sorted(read_samples(path)) == [0, 1, 2, 3, 4]
    assert evaluate(model, tokenizer, PROBLEMS, **kwargs) == m and counter.prompts == 3  # complete: nothing to do
    other = [Problem("Something else?", "1")] + PROBLEMS[1:]
    with pytest.raises(ValueError, match="other problems"):
        evaluate(model, tokenizer, other, **kwargs)


def test_read_samples_repairs_an_interrupted_last_line_only_for_a_writer(tmp_path, capsys):
    record = {"index": 0, "question": "q", "gold": "1", "completions": ["c"], "num_tokens": [1], "extracted": [None],
              "correct": [False]}
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(record))  # whole record, newline not yet written
    assert list(read_samples(path, repair=True)) == [0] and path.read_text().endswith("\n")
    torn = json.dumps(record) + "\n" + json.dumps({**record, "index": 1})[:-5]  # cut off mid-record
    path.write_text(torn)
    assert list(read_samples(path)) == [0] and path.read_text() == torn  # the report reads; it does not write
    assert f"{path}: dropped a torn last line" in capsys.readouterr().out
    assert list(read_samples(path, repair=True)) == [0] and len(path.read_text().splitlines()) == 1
    path.write_text('{"index": 3}\n' + json.dumps(record) + "\n")
    with pytest.raises(DataError, match="samples.jsonl:1: missing completions, correct, extracted, gold"):
        read_samples(path)


# ---------------------------------------------------------------- command line


def _jsonl_task(tmp_path: Path) -> str:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"question": p.question, "answer": p.answer}) + "\n" for p in PROBLEMS[:4]))
    return f"jsonl:{path}"


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return argv[: i + 1] + [value] + argv[i + 2 :]


def test_eval_cli_writes_results_and_resumes_only_with_the_same_settings(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", "tiny-random", "--task", _jsonl_task(tmp_path), "--limit", "3", "--batch-size", "4",
            "--max-new-tokens", "4", "--prefill", "<reasoning>\\n", "--output", str(out)]
    eval_cli(argv)
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["metrics"]["n"] == 3
    assert results["settings"]["prefill"] == "<reasoning>\n" and results["settings"]["backend"] == "transformers"
    assert results["timing"]["problems_generated"] == 3 and "transformers" in results["versions"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3
    assert "pass@1" in capsys.readouterr().out

    eval_cli(_with(argv, "--limit", "4"))  # a larger limit extends the same evaluation
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["n"] == 4 and results["timing"]["problems_generated"] == 1

    with pytest.raises(ValueError, match="max_new_tokens: 4 -> 5"):
        eval_cli(_with(argv, "--max-new-tokens", "5"))


def test_shards_run_the_whole_evaluations_batches_and_the_last_to_finish_merges_them(tmp_path, monkeypatch):
    from memoryr.evaluation import evaluate as module

    path = tmp_path / "problems.jsonl"  # 9 problems of different prompt lengths, 2 a batch: 5 batches
    rows = [(f"What is {a} plus {b}?" + " Think." * (a % 4), str(a + b)) for a, b in zip(range(9), range(10, 19))]
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    argv = ["--model", "tiny-random", "--task", f"jsonl:{path}", "--batch-size", "2", "--max-new-tokens", "6"]
    batches = []
    real_generate = module._hf_generate

    def recording(model, tokenizer, prompts, *args, **kwargs):
        batches.append(tuple(prompts))
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(module, "_hf_generate", recording)
    eval_cli([*argv, "--output", str(tmp_path / "whole")])
    whole, whole_batches = read_samples(tmp_path / "whole" / "samples.jsonl"), batches[:]
    out = tmp_path / "sharded"
    for shard, batches_run in (("3/3", 1), ("1/3", 2), ("2/3", 2)):  # batches 3; 1 and 4; 2 and 5
        batches.clear()
        assert not (out / "results.json").exists()  # until the last shard finishes
        eval_cli([*argv, "--output", str(out), "--shard", shard])
        assert batches == whole_batches[int(shard[0]) - 1 :: 3] and len(batches) == batches_run
    results, first = json.loads((out / "results.json").read_text()), json.loads((tmp_path / "whole" / "results.json").read_text())
    assert results["status"] == "complete" and results["metrics"] == first["metrics"]
    assert results["timing"]["problems_generated"] == 9 and results["from_shards"] == [
        "shard-1-of-3", "shard-2-of-3", "shard-3-of-3"]
    assert read_samples(out / "samples.jsonl") == whole
    assert sorted(i for k in (1, 2, 3) for i in read_samples(out / f"shard-{k}-of-3" / "samples.jsonl")) == list(range(9))

    # a whole evaluation takes in what a shard recorded and generates only the rest
    partial = tmp_path / "partial"
    eval_cli([*argv, "--output", str(partial), "--shard", "1/3"])
    batches.clear()
    eval_cli([*argv, "--output", str(partial)])
    assert batches == [b for i, b in enumerate(whole_batches) if i % 3 != 0]
    assert read_samples(partial / "samples.jsonl") == whole
    assert json.loads((partial / "results.json").read_text())["metrics"] == first["metrics"]


def test_an_interrupted_evaluation_says_so_and_resumes(tmp_path, tiny_model_path, monkeypatch):
    from memoryr.evaluation import evaluate as module

    real_record = module._record
    calls = []

    def ctrl_c_in_the_second_batch(*args):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_record(*args)

    out = tmp_path / "eval"
    argv = ["--model", "tiny-random", "--task", _jsonl_task(tmp_path), "--output", str(out), "--batch-size", "2",
            "--max-new-tokens", "4"]
    monkeypatch.setattr(module, "_record", ctrl_c_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        eval_cli(argv)
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted" and "interrupted" in results and "metrics" not in results
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2  # the first batch was kept

    monkeypatch.setattr(module, "_record", real_record)
    eval_cli(argv)
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["metrics"]["n"] == 4
    assert results["timing"]["problems_generated"] == 2


def test_a_model_that_fails_to_load_leaves_no_running_evaluation_behind(tmp_path, tiny_model_path):
    no_weights = tmp_path / "model"  # tiny-random's config and tokenizer, its weights missing
    no_weights.mkdir()
    for file in Path(tiny_model_path).iterdir():
        if file.suffix != ".safetensors":
            (no_weights / file.name).write_bytes(file.read_bytes())
    out = tmp_path / "eval"
    with pytest.raises(FileNotFoundError, match=f"cannot load model '{no_weights}'"):
        eval_cli(["--model", str(no_weights), "--task", _jsonl_task(tmp_path), "--output", str(out)])
    assert not out.exists()  # no results.json saying "running" for an evaluation that never started


def test_a_prompt_longer_than_the_models_context_is_refused_before_anything_is_written(tmp_path, tiny_model_path):
    path = tmp_path / "long.jsonl"  # tiny-random's context is 2048 tokens; the first question alone is ~3000
    rows = [("What is " + "1 + " * 1500 + "1?", "1501"), ("What is 2 + 2?", "4")]
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    out = tmp_path / "eval"
    with pytest.raises(DataError, match="1 of 2 evaluation prompts are longer than the 1792 tokens the model's context "
                                        r"leaves \(max_position_embeddings 2048 - --max-new-tokens 256\)"):
        eval_cli(["--model", "tiny-random", "--task", f"jsonl:{path}", "--output", str(out)])
    assert not out.exists()


BAD_EVAL_INPUTS = [  # (flag, value, the error line's text): README's "Bad input" table
    ("--limit", "-1", "--limit must be >= 1 (or absent: every problem), got -1"),
    ("--limit", "0", "--limit must be >= 1 (or absent: every problem), got 0"),
    ("--batch-size", "-1", "--batch-size must be >= 1, got -1"),
    ("--max-new-tokens", "-5", "--max-new-tokens must be >= 1, got -5"),
    ("--num-samples", "0", "--num-samples must be >= 1, got 0"),
    ("--temperature", "-0.5", "--temperature must be >= 0 and finite, got -0.5"),
    ("--temperature", "nan", "--temperature must be >= 0 and finite, got nan"),
    ("--task-size", "0", "--task-size must be >= 1, got 0"),
    ("--validation-size", "-1", "--validation-size must be >= 0, got -1"),
    ("--seed", "-1", "--seed must be between 0 and 2**32 - 1 (what numpy and torch accept), got -1"),
    ("--seed", str(2**32), f"--seed must be between 0 and 2**32 - 1 (what numpy and torch accept), got {2**32}"),
    ("--shots", "4", "--shots must be between 0 and 3 for exemplar set 'word', got 4"),
    ("--num-samples", "4", "--num-samples 4 needs --temperature > 0: greedy decoding would give 4 equal samples"),
    ("--shard", "3/2", "--shard must be K/N with 1 <= K <= N, e.g. 1/2, got '3/2'"),
    ("--shard", "0/2", "--shard must be K/N with 1 <= K <= N, e.g. 1/2, got '0/2'"),
    ("--shard", "half", "--shard must be K/N with 1 <= K <= N, e.g. 1/2, got 'half'"),
]


@pytest.mark.parametrize("flag,value,message", BAD_EVAL_INPUTS, ids=[f"{f} {v}" for f, v, _ in BAD_EVAL_INPUTS])
def test_bad_eval_input_is_one_error_line_before_anything_is_written(tmp_path, capsys, monkeypatch, flag, value, message):
    from memoryr.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr("memoryr.evaluation.evaluate.load_for_eval", no_model)
    out = tmp_path / "eval"
    code = main(["eval", "--model", "tiny-random", "--task", _jsonl_task(tmp_path), "--output", str(out), flag, value])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and lines == [f"error: {message}"], err
    assert not out.exists()


def test_presets_set_the_published_protocols_and_flags_beside_them_win():
    paper = parse_eval_args(["--model", "m", "--output", "o", "--preset", "paper-gsm8k"])
    assert (paper.task, paper.split, paper.shots, paper.system_prompt, paper.prefill, paper.grading) == \
        ("gsm8k", "test", 0, "reference", "", "reference")
    assert (paper.max_new_tokens, paper.num_samples, paper.temperature) == (200, 1, 0.0)  # greedy, the reference's 200
    qwen = parse_eval_args(["--model", "m", "--output", "o", "--preset", "qwen-gsm8k", "--limit", "50"])
    assert (qwen.system_prompt, qwen.grading, qwen.max_new_tokens, qwen.limit) == ("boxed", "boxed", 2048, 50)
    mine = parse_eval_args(["--model", "m", "--output", "o", "--max-new-tokens", "300", "--preset", "paper-gsm8k"])
    assert mine.max_new_tokens == 300 and mine.grading == "reference"
    assert set(PRESETS) == {"paper-gsm8k", "qwen-gsm8k"}
    with pytest.raises(SystemExit):  # no task and no preset
        parse_eval_args(["--model", "m", "--output", "o"])


def test_eval_cli_records_the_preset_and_resumes_records_written_before_system_prompts(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--model", "tiny-random", "--preset", "paper-gsm8k", "--task", _jsonl_task(tmp_path), "--limit", "2",
            "--max-new-tokens", "4", "--output", str(out)]
    eval_cli(argv)
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["preset"] == "paper-gsm8k" and results["settings"]["system_prompt"] == "reference"
    assert "preset paper-gsm8k" in capsys.readouterr().out
    record = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert record["extracted"][0] == record["completions"][0].split("<answer>")[-1].split("</answer>")[0].strip()

    older = tmp_path / "older"  # an evaluation written before system prompts were a setting used memoryr's xml one
    plain = ["--model", "tiny-random", "--task", _jsonl_task(tmp_path), "--limit", "2", "--max-new-tokens", "4",
             "--output", str(older)]
    eval_cli(plain)
    results = json.loads((older / "results.json").read_text())
    del results["settings"]["system_prompt"]
    (older / "results.json").write_text(json.dumps(results))
    eval_cli(_with(plain, "--limit", "3"))
    assert json.loads((older / "results.json").read_text())["metrics"]["n"] == 3


def test_resolve_eval_model_finds_final_or_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    for folder in ("checkpoint-9", "checkpoint-10"):
        (run / folder).mkdir(parents=True)
        (run / folder / "config.json").write_text("{}")
    (run / "run.json").write_text("{}")
    assert resolve_eval_model(str(run)) == str(run / "checkpoint-10")
    assert resolve_eval_model(str(run / "checkpoint-9")) == str(run / "checkpoint-9")
    (run / "final").mkdir()
    (run / "final" / "adapter_config.json").write_text("{}")  # a LoRA run's final adapter
    assert resolve_eval_model(str(run)) == str(run / "final")
    empty = tmp_path / "empty"
    (empty).mkdir()
    (empty / "run.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no final/ model"):
        resolve_eval_model(str(empty))
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        resolve_eval_model(str(tmp_path))
