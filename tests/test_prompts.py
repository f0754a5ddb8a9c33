"""Prompts: the paper's system prompt, k-shot exemplars in the rewarded format, chat template + pre-fill."""

import pytest

from memoryr.models import load_tokenizer
from memoryr.tasks.prompts import EXEMPLARS, SYSTEM_PROMPT, SYSTEM_PROMPTS, build_messages, build_prompt, format_solution
from memoryr.tasks.rewards import correctness, strict_format


def test_exemplars_earn_full_format_and_correctness():
    for pool in EXEMPLARS.values():
        for _, reasoning, answer in pool:
            text = format_solution(reasoning, answer)
            assert strict_format(completions=[text]) == [0.5]
            assert correctness(completions=[text], answer=[answer]) == [1.0]


def test_messages_with_shots():
    messages = build_messages("What is 2+2?", shots=2, exemplars="arith")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[-1]["content"] == "What is 2+2?"


def test_bad_shots_and_exemplar_set():
    with pytest.raises(ValueError, match="shots must be between 0 and 3"):
        build_messages("q", shots=4)
    with pytest.raises(ValueError, match="unknown exemplar set 'poems'"):
        build_messages("q", exemplars="poems")


def test_chat_template_and_prefill(tiny_model_path):
    tokenizer = load_tokenizer("tiny-random")
    prompt = build_prompt(tokenizer, "What is 2+2?", shots=1, prefill="<reasoning>\n")
    assert prompt.startswith("<|im_start|>system\nRespond in the following format:")
    assert prompt.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<reasoning>\n")
    assert prompt.count("<|im_start|>assistant") == 2


def test_named_system_prompts():
    assert build_messages("q")[0]["content"] == SYSTEM_PROMPT
    # the public Memory-R code's text, character for character
    assert build_messages("q", system_prompt="reference")[0]["content"] == (
        "\nRespond in the following format:\n\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n")
    assert build_messages("q", system_prompt="boxed")[0]["content"] == (
        "Please reason step by step, and put your final answer within \\boxed{}.")
    assert set(SYSTEM_PROMPTS) == {"xml", "reference", "boxed"}
    with pytest.raises(ValueError, match="unknown system prompt 'chatty'"):
        build_messages("q", system_prompt="chatty")


def test_boxed_prompt_renders_qwens_evaluation_prompt(tiny_model_path):
    tokenizer = load_tokenizer("tiny-random")  # the same ChatML template as Qwen2.5
    assert build_prompt(tokenizer, "What is 2+2?", system_prompt="boxed") == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
