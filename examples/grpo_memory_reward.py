"""Memory-R+ in a plain TRL GRPO script: a correctness reward plus the memory reward, memories kept in checkpoints.

    python examples/grpo_memory_reward.py --model tiny-random --max_steps 2 --output_dir runs/example
    python examples/grpo_memory_reward.py --max_steps 4 --output_dir runs/example --resume   # continue exactly
    accelerate launch --multi_gpu --num_processes 2 examples/grpo_memory_reward.py ...      # several processes

GSM8K problems come from the data folder (MEMORYR_DATA_DIR); `--model` is a memoryr alias
(tiny-random, smollm2-135m-instruct), a Hugging Face id or a local folder.
"""

import argparse

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from memoryr import MemoryCheckpointCallback, memory_reward, outcome_reward
from memoryr.models import resolve_model
from memoryr.tasks.data import load_problems
from memoryr.tasks.prompts import SYSTEM_PROMPT

parser = argparse.ArgumentParser(description="GRPO on GSM8K with Memory-R+ rewards, in plain TRL.")
parser.add_argument("--model", default="tiny-random", help="memoryr alias, Hugging Face id or local folder")
parser.add_argument("--max_steps", type=int, default=2)
parser.add_argument("--output_dir", default="runs/example")
parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
args = parser.parse_args()

# TRL's `prompt` column, plus the bare `question` (the memory key) and the gold `answer` the rewards read
dataset = Dataset.from_list([
    {"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.question}],
     "question": p.question, "answer": p.answer}
    for p in load_problems("gsm8k", "train", limit=64)
])
reward = memory_reward(exploration=True, explore_warmup_steps=1)  # Memory-R+ with the MiniLM encoder
on_gpu = torch.cuda.is_available()  # without GPUs, use_cpu=True lets accelerate's processes connect (gloo)
config = GRPOConfig(
    output_dir=args.output_dir, max_steps=args.max_steps, save_steps=2, per_device_train_batch_size=8,
    num_generations=8, max_completion_length=64, learning_rate=1e-5, logging_steps=1, report_to="none",
    activation_checkpointing=False, use_cpu=not on_gpu, bf16=on_gpu,
)
trainer = GRPOTrainer(
    model=resolve_model(args.model),
    reward_funcs=[outcome_reward("correctness"), reward],
    args=config,
    train_dataset=dataset,
)
trainer.add_callback(MemoryCheckpointCallback(reward))
trainer.train(resume_from_checkpoint=True if args.resume else None)
