"""The command line: one `error:` line and exit status 2 for each kind of bad input, never a traceback."""

import json
from pathlib import Path

import pytest

from memoryr.cli import main

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "gsm8k-r1-cpu.yaml")
TINY = ["--model_name_or_path", "tiny-random", "--max_steps", "1"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_config_key_lists_the_valid_ones(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--learning_rat", "1", "--output_dir", str(tmp_path))
    assert code == 2
    line = one_error_line(err)
    assert "unknown config key 'learning_rat'" in line and "valid keys:" in line and "learning_rate" in line


def test_unknown_model_alias_lists_the_aliases(capsys, tmp_path, data_dir):
    code, _, err = run(capsys, "train", "--config", RECIPE, "--model_name_or_path", "smollm9-1m", "--max_steps", "1",
                       "--output_dir", str(tmp_path / "r"))
    assert code == 2
    assert "cannot load model 'smollm9-1m'" in one_error_line(err) and "tiny-random" in err


def test_missing_data_and_unreadable_jsonl(capsys, tmp_path, tiny_model_path):
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--task", "jsonl:/nonexistent/p.jsonl",
                       "--output_dir", str(tmp_path / "a"))
    assert code == 2 and "/nonexistent/p.jsonl: no such file" in one_error_line(err)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\nnot json\n')
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--task", f"jsonl:{bad}", "--output_dir", str(tmp_path / "b"))
    assert code == 2 and "bad.jsonl:2: not valid JSON" in one_error_line(err)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"question": "q", "answer": "1"}\n{"question": "caf\xe9 au lait?", "answer": "2"}\n')
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--task", f"jsonl:{latin1}",
                       "--output_dir", str(tmp_path / "c"))
    assert code == 2 and "latin1.jsonl:2: not valid UTF-8 (byte 0xe9 at column 18)" in one_error_line(err)
    assert not (tmp_path / "c").exists()


def test_an_output_dir_that_is_a_file_is_one_error_line_before_the_model_loads(capsys, tmp_path, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run folder")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output_dir was checked")

    monkeypatch.setattr("memoryr.training.train.load_tokenizer", no_model)
    for output_dir in (a_file, a_file / "run"):
        code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--output_dir", str(output_dir))
        assert code == 2
        assert f"output_dir {output_dir} cannot be a folder: {a_file} is a file" in one_error_line(err)
    assert a_file.read_text() == "not a run folder"


def test_a_prompt_longer_than_the_models_context_is_refused_before_training(capsys, tmp_path, tiny_model_path):
    problems = tmp_path / "long.jsonl"  # tiny-random's context is 2048 tokens; this question alone is ~3000
    rows = [{"question": "What is " + "1 + " * 1500 + "1?", "answer": "1501"}, {"question": "What is 2 + 2?", "answer": "4"},
            {"question": "What is 3 + 3?", "answer": "6"}]
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--task", f"jsonl:{problems}", "--validation_size", "1",
                       "--max_completion_length", "48", "--output_dir", str(out))
    assert code == 2
    line = one_error_line(err)
    assert "1 of 2 training prompts are longer than the 2000 tokens the model's context leaves" in line
    assert "max_position_embeddings 2048 - max_completion_length 48" in line and "max_prompt_length" in line
    assert not out.exists()
    # the same question among the in-training evaluation's problems (which are never cut): refused as well
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps(row) + "\n" for row in rows[1:]))
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, "--task", f"jsonl:{short}", "--eval_task",
                       f"jsonl:{problems}", "--eval_split", "test", "--validation_size", "0", "--max_completion_length", "48",
                       "--output_dir", str(out))
    assert code == 2
    line = one_error_line(err)
    assert "1 of 3 test prompts are longer than the 2000 tokens the model's context leaves" in line
    assert "the in-training evaluation does not cut its prompts" in line
    assert not out.exists()


def test_unknown_command_and_missing_memory(capsys, tmp_path):
    code, _, err = run(capsys, "trian")
    assert code == 2 and "unknown command 'trian'" in err
    code, _, err = run(capsys, "memory", "inspect", str(tmp_path))
    assert code == 2 and "no saved memory under" in one_error_line(err)


def test_models_list_and_help(capsys):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "smollm2-135m-instruct" in out and "tiny-random" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("train", "eval", "report", "sweep", "memory", "bench"))
    code, out, _ = run(capsys, "train", "--config", RECIPE, "--help")  # help wins over a half-typed command
    assert code == 0 and "usage: memoryr train" in out and "progress bar" in out


BAD_TRAIN_INPUTS = [  # (overrides, the error line's text): the table in README's "Bad input" section
    (["--num_generations", "0"], "num_generations must be >= 2"),
    (["--num_generations", "1"], "GRPO requires at least 2 generations per prompt"),  # TRL's own check
    (["--max_steps", "-5"], "max_steps must be > 0, or -1 to train for num_train_epochs, got -5"),
    (["--max_steps", "three"], "argument --max_steps/--max-steps: invalid int value: 'three' (in the command line"),
    (["--temperature", "0"], "temperature must be > 0"),
    (["--learning_rate", "-1"], "learning_rate must be >= 0"),
    (["--eval_steps", "0"], "eval_steps must be > 0"),
    (["--memory_k", "0"], "memory_k must be >= 1"),
    (["--memory_window", "0"], "memory_window must be >= 1"),
    (["--memory_explore_warmup", "-1"], "memory_explore_warmup must be >= 0"),
    (["--memory_mode", "faiss"], "memory_mode must be one of paper, reference"),
    (["--memory_beta_explore", "nan"], "memory_beta_explore must be a finite number"),
    (["--cosine_max_len", "0"], "cosine_max_len must be >= 1"),
    (["--grading", "fuzzy"], "grading must be one of strict, last_number"),
    (["--eval_batch_size", "0"], "eval_batch_size must be >= 1"),
    (["--train_limit", "0"], "train_limit must be >= 1"),
    (["--eval_at_start", "true", "--eval_limit", "0"], "eval_at_start must be false when eval_limit is 0"),
    (["--eval_split", "train"], "eval_split 'train' is the training split"),
    (["--validation_size", "0"], "eval_split validation needs validation_size >= 1"),
    (["--per_device_train_batch_size", "3"], "generation_batch_size (12) must be divisible by num_generations (8)"),
    (["--seed", "-1"], "seed must be between 0 and 2**32 - 1 (what numpy and torch accept), got -1"),
    (["--seed", "4294967296"], "seed must be between 0 and 2**32 - 1 (what numpy and torch accept), got 4294967296"),
]


@pytest.mark.parametrize("overrides,message", BAD_TRAIN_INPUTS, ids=[" ".join(o) for o, _ in BAD_TRAIN_INPUTS])
def test_bad_train_input_is_one_error_line_before_anything_is_written(capsys, tmp_path, overrides, message):
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--config", RECIPE, *TINY, *overrides, "--output_dir", str(out))
    assert code == 2 and message in one_error_line(err)
    assert not out.exists()


def test_a_bad_value_in_a_recipe_names_the_key_and_the_recipe(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    lines = [line for line in Path(RECIPE).read_text().splitlines() if not line.startswith("max_steps")]
    recipe.write_text("\n".join([*lines, "max_steps: three"]) + "\n")
    code, _, err = run(capsys, "train", "--config", str(recipe), "--output_dir", str(tmp_path / "run"))
    assert code == 2 and "--max_steps/--max-steps: invalid int value: 'three' (in the recipe" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_memory_inspect_needs_k_of_at_least_one(capsys, tmp_path):
    code, _, err = run(capsys, "memory", "inspect", str(tmp_path), "--k", "0")
    assert code == 2 and "--k must be >= 1" in one_error_line(err)
