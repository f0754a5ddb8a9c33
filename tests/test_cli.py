"""The command line: one `error:` line and exit status 2 for each kind of bad input, never a traceback."""

from pathlib import Path


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
