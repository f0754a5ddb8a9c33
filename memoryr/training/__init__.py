"""Training: GRPO with TRL on the recipes' rewards, and the CPU speed-ups that serve it."""
