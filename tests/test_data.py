"""Data loaders: gold extraction, resolution order, and one clear error per bad input."""

import json

import pytest

from memoryr.tasks.data import DataError, gsm8k_gold, last_boxed, load_problems


def test_gsm8k_from_the_data_folder(data_dir):
    train = load_problems("gsm8k", "train", data_dir_setting=str(data_dir))
    test = load_problems("gsm8k", "test", data_dir_setting=str(data_dir))
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].answer == "72"
    assert all("," not in p.answer for p in train)


def test_math500_and_aime24(data_dir):
    math500 = load_problems("math500", "test", data_dir_setting=str(data_dir))
    aime = load_problems("aime24", "test", data_dir_setting=str(data_dir))
    assert len(math500) == 500 and math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert len(aime) == 30 and aime[0].answer.isdigit()


def test_gold_extraction():
    assert gsm8k_gold("She has 3 + 4 = 7\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no final answer")
    assert last_boxed("so \\boxed{2} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("unbalanced \\boxed{\\frac{1}{2}") is None
    assert last_boxed("none") is None


def test_explicit_path_wins_over_data_dir(tmp_path, data_dir):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "x\n#### 5"}) + "\n")
    problems = load_problems("gsm8k", "train", path=str(path), data_dir_setting=str(data_dir))
    assert [(p.question, p.answer) for p in problems] == [("q?", "5")]


def test_data_dir_from_environment(monkeypatch, tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 9"}) + "\n")
    monkeypatch.setenv("MEMORYR_DATA_DIR", str(tmp_path))
    assert load_problems("gsm8k", "test")[0].answer == "9"


def test_hub_fallback_failure_is_one_clear_line(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("MEMORYR_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="could not load openai/gsm8k .*MEMORYR_DATA_DIR"):
        load_problems("gsm8k", "train")


def test_jsonl_task_with_custom_fields(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"q": "1+1?", "a": 2}\n\n{"q": "2+2?", "a": "4"}\n')
    problems = load_problems(f"jsonl:{path}", question_field="q", answer_field="a")
    assert [(p.question, p.answer) for p in problems] == [("1+1?", "2"), ("2+2?", "4")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "q", "answer": "1"}\n{not json}\n', r"p\.jsonl:2: not valid JSON"),
        ('{"question": "q"}\n', r"p\.jsonl:1: missing field 'answer'"),
        ('{"question": "", "answer": "1"}\n', r"p\.jsonl:1: field 'question' is empty"),
        ('[1, 2]\n', r"p\.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_problems(f"jsonl:{path}")


def test_gsm8k_row_without_final_answer_is_an_error(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'answer': no '#### N'"):
        load_problems("gsm8k", "train", path=str(path))


def test_unknown_task_missing_file_and_split():
    with pytest.raises(DataError, match="unknown task 'gsm9k'; known: gsm8k"):
        load_problems("gsm9k")
    with pytest.raises(DataError, match="no such file"):
        load_problems("jsonl:/nonexistent/x.jsonl")
    with pytest.raises(DataError, match="math500 has no split 'train'"):
        load_problems("math500", "train")


def test_limit_and_seeded_shuffle(data_dir):
    a = load_problems("gsm8k", "train", data_dir_setting=str(data_dir), limit=5, shuffle=True, seed=1)
    b = load_problems("gsm8k", "train", data_dir_setting=str(data_dir), limit=5, shuffle=True, seed=1)
    c = load_problems("gsm8k", "train", data_dir_setting=str(data_dir), limit=5, shuffle=True, seed=2)
    assert a == b and a != c and len(a) == 5


def test_reasoning_gym_is_seeded_and_splits_differ():
    options = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    train = load_problems("reasoning-gym:basic_arithmetic", "train", size=50, seed=3, task_config=options)
    again = load_problems("reasoning-gym:basic_arithmetic", "train", size=50, seed=3, task_config=options)
    test = load_problems("reasoning-gym:basic_arithmetic", "test", size=50, seed=3, task_config=options)
    assert train == again and len(train) == 50
    assert not {p.question for p in train} & {p.question for p in test}  # disjoint, not just another seed
    assert all(p.question.startswith("Calculate") for p in train)


def test_reasoning_gym_train_validation_and_test_are_disjoint_and_report_the_drops(capsys):
    # 1-digit sums of two terms: only 10 x 10 x 2 questions exist, so the streams overlap and must be filtered
    options = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"]}
    splits = {split: load_problems("reasoning-gym:basic_arithmetic", split, size=100, seed=5, task_config=options)
              for split in ("train", "validation", "test")}
    out = capsys.readouterr().out
    questions = {split: {p.question for p in problems} for split, problems in splits.items()}
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]
    dropped = 100 - len(splits["validation"])
    assert dropped > 0 and f"validation: dropped {dropped} of 100 generated problems also in train or test" in out
    assert f"test: dropped {100 - len(splits['test'])} of 100 generated problems also in train\n" in out
    with pytest.raises(DataError, match="has no split 'dev'"):
        load_problems("reasoning-gym:basic_arithmetic", "dev", size=10, seed=5, task_config=options)


def test_fixed_sets_carve_validation_from_the_end_of_train(data_dir, tmp_path):
    whole = load_problems("gsm8k", "train", data_dir_setting=str(data_dir))
    train = load_problems("gsm8k", "train", data_dir_setting=str(data_dir), validation_size=200)
    validation = load_problems("gsm8k", "validation", data_dir_setting=str(data_dir), validation_size=200, seed=9)
    assert (len(train), len(validation)) == (7273, 200)
    assert train == whole[:-200] and validation == whole[-200:]  # the same slice at every seed
    assert not {p.question for p in train} & {p.question for p in validation}
    shuffled = load_problems("gsm8k", "train", data_dir_setting=str(data_dir), validation_size=200, shuffle=True, seed=1)
    assert not {p.question for p in shuffled} & {p.question for p in validation}
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(5)))
    assert [p.answer for p in load_problems(f"jsonl:{path}", "validation", validation_size=2)] == ["3", "4"]
    assert [p.answer for p in load_problems(f"jsonl:{path}", "train", validation_size=2)] == ["0", "1", "2"]
    assert len(load_problems(f"jsonl:{path}", "test", validation_size=2)) == 5  # a file used as a test set: all of it
    with pytest.raises(DataError, match="validation_size 5 leaves no training problems"):
        load_problems(f"jsonl:{path}", "train", validation_size=5)
    with pytest.raises(DataError, match="the validation split is empty"):
        load_problems(f"jsonl:{path}", "validation", validation_size=0)
    with pytest.raises(DataError, match="math500 has no split 'validation'"):
        load_problems("math500", "validation", data_dir_setting=str(data_dir), validation_size=10)
