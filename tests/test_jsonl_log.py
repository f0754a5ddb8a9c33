"""The one reader of memoryr's JSONL logs: a torn last line is dropped with a warning; other bad lines are errors."""

import json

import pytest

from memoryr.jsonl_log import read_log

ROWS = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "text": "ünïcode"}]
WHOLE = "".join(json.dumps(r) + "\n" for r in ROWS)


def test_a_torn_last_line_is_dropped_with_a_warning_naming_the_file(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text(WHOLE + '{"step": 3, "lo')
    assert read_log(path) == ROWS
    assert capsys.readouterr().out == f"[memoryr] {path}: dropped a torn last line (a crash while it was written)\n"
    path.write_bytes(WHOLE.encode() + '{"text": "ü'.encode("utf-8")[:-1])  # cut inside a UTF-8 character
    assert read_log(path) == ROWS and "dropped a torn last line" in capsys.readouterr().out


def test_a_whole_last_row_without_its_newline_is_kept_and_empty_lines_are_skipped(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n" + WHOLE + "  \n" + json.dumps({"step": 3}))
    assert read_log(path) == ROWS + [{"step": 3}]
    assert capsys.readouterr().out == ""
    path.write_text("")
    assert read_log(path) == []


@pytest.mark.parametrize("text,line,problem", [
    (WHOLE + '{"step": 3, "lo\n', 3, "not valid JSON"),  # cut off, yet a newline follows: not a crash mid-append
    ('{"step": 0, "lo\n' + WHOLE, 1, "not valid JSON"),  # a torn line that is not the last
    (WHOLE + "[1, 2]\n", 3, "expected a JSON object, got list"),
    (WHOLE + "7", 3, "expected a JSON object, got int"),  # valid JSON: not torn, so not dropped
])
def test_any_other_bad_line_is_an_error_naming_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"metrics.jsonl:{line}: {problem}"):
        read_log(path)


def test_rows_must_hold_the_fields_asked_for_and_errors_take_the_callers_type(tmp_path):
    class LogError(Exception):
        pass

    path = tmp_path / "samples.jsonl"
    path.write_text(WHOLE)
    assert read_log(path, fields={"step", "loss"}) == ROWS
    with pytest.raises(LogError, match="samples.jsonl:1: missing index, text"):
        read_log(path, fields={"step", "index", "text"}, error=LogError)


def test_repair_ends_the_file_after_its_last_row_so_an_append_starts_a_line_of_its_own(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(WHOLE + '{"step": 3, "lo')
    read_log(path)
    assert path.read_text().endswith('"lo')  # a reader alone changes nothing
    assert read_log(path, repair=True) == ROWS and path.read_text() == WHOLE
    path.write_text(WHOLE.rstrip("\n"))  # the last row whole, its newline not yet written
    assert read_log(path, repair=True) == ROWS and path.read_text() == WHOLE
    assert read_log(path, repair=True) == ROWS and path.read_text() == WHOLE  # a whole log is left as it is
