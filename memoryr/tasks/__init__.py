"""The task: problems, prompts, answer grading and the outcome rewards that judge a completion."""
