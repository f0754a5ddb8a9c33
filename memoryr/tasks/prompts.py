"""Prompts: the paper's XML system prompt, k-shot exemplars, chat templates, assistant pre-fill.

A prompt is rendered to text with the tokenizer's chat template (generation prompt added), then
the pre-fill (e.g. "<reasoning>\\n") is appended, so the model continues its own assistant turn.
Rewards and grading see `prefill + completion`.

System prompts (`SYSTEM_PROMPTS`, chosen by name): `xml`, memoryr's XML format instruction;
`reference`, the same instruction exactly as the public Memory-R code writes it (utils_gsm8k.py
`SYSTEM_PROMPT`: a leading newline, a blank line after the first line, a trailing newline);
`boxed`, the instruction of Qwen's math evaluation (Qwen2.5-Math harness prompt `qwen25-math-cot`).
"""

from __future__ import annotations

from memoryr.tasks.data import DataError

SYSTEM_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>"""

SYSTEM_PROMPTS = {
    "xml": SYSTEM_PROMPT,
    "reference": "\nRespond in the following format:\n\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n",
    "boxed": "Please reason step by step, and put your final answer within \\boxed{}.",
}

# Our own worked exemplars, in the exact format the rewards check. "word" suits GSM8K-style
# problems; "arith" suits short arithmetic expressions (reasoning-gym basic_arithmetic); "arith1"
# suits two-term expressions (one operation).
EXEMPLARS = {
    "word": [
        (
            "A baker makes 24 muffins in the morning and 18 in the afternoon. She sells 30 of them. "
            "How many muffins are left?",
            "She makes 24 + 18 = 42 muffins.\nAfter selling 30, 42 - 30 = 12 are left.",
            "12",
        ),
        (
            "Tom reads 15 pages a day for 4 days, then 10 pages a day for 3 days. How many pages does he read?",
            "First 15 * 4 = 60 pages.\nThen 10 * 3 = 30 pages.\nIn total 60 + 30 = 90 pages.",
            "90",
        ),
        (
            "A ticket costs $8. A family buys 5 tickets and pays with a $50 bill. How much change do they get?",
            "5 tickets cost 5 * 8 = 40 dollars.\nThe change is 50 - 40 = 10 dollars.",
            "10",
        ),
    ],
    "arith": [
        ("Calculate 7 + 5 * 3.", "First 5 * 3 = 15.\nThen 7 + 15 = 22.", "22"),
        ("Calculate 40 - 12 - 9.", "First 40 - 12 = 28.\nThen 28 - 9 = 19.", "19"),
        ("Calculate -6 * 4 + 30.", "First -6 * 4 = -24.\nThen -24 + 30 = 6.", "6"),
    ],
    # one operation, one line: for two-term problems, where the two-step "arith" exemplars are copied
    # onto one-step problems ("First 95 + 76 = 171. Then 95 + 76 = 161.")
    "arith1": [
        ("Calculate 23 + 45.", "23 + 45 = 68.", "68"),
        ("Calculate 81 - 36.", "81 - 36 = 45.", "45"),
        ("Calculate 7 * 8.", "7 * 8 = 56.", "56"),
    ],
}


def format_solution(reasoning: str, answer: str) -> str:
    """An assistant turn in the paper's format."""
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


def build_messages(question: str, shots: int = 0, exemplars: str = "word", system_prompt: str = "xml") -> list[dict]:
    """Chat messages: the named system prompt, `shots` exemplar turns, then the question."""
    if system_prompt not in SYSTEM_PROMPTS:
        raise ValueError(f"unknown system prompt {system_prompt!r}; choose one of {', '.join(SYSTEM_PROMPTS)}")
    if exemplars not in EXEMPLARS:
        raise ValueError(f"unknown exemplar set {exemplars!r}; choose one of {', '.join(EXEMPLARS)}")
    pool = EXEMPLARS[exemplars]
    if not 0 <= shots <= len(pool):
        raise ValueError(f"shots must be between 0 and {len(pool)} for exemplar set {exemplars!r}, got {shots}")
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[system_prompt]}]
    for q, reasoning, answer in pool[:shots]:
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": format_solution(reasoning, answer)})
    messages.append({"role": "user", "content": question})
    return messages


def build_prompt(
    tokenizer, question: str, shots: int = 0, exemplars: str = "word", prefill: str = "", system_prompt: str = "xml"
) -> str:
    """The full prompt text the model continues: chat template with generation prompt, then the pre-fill."""
    messages = build_messages(question, shots, exemplars, system_prompt)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill


def check_prompt_lengths(
    prompts: list[str], tokenizer, context: int | None, completion_tokens: int, *, what: str, budget: str, fix: str
) -> None:
    """Refuse prompts that leave their completions no room in the model's context, before any generation (a
    250k-token question otherwise stalls the first batch for hours). The error names `what` prompts, how many and
    the longest, the `budget` setting that holds `completion_tokens`, and `fix` (formatted with `room`)."""
    if context is None:
        return
    room = context - completion_tokens
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    too_long = [n for n in lengths if n > room]
    if too_long:
        raise DataError(f"{len(too_long)} of {len(prompts)} {what} are longer than the {room} tokens the model's "
                        f"context leaves (max_position_embeddings {context} - {budget} {completion_tokens}); the "
                        f"longest has {max(too_long)} tokens: {fix.format(room=room)}")
