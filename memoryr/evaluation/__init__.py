"""Evaluation: measuring models and runs, summarising, reporting and comparing them, and sweeps of runs."""
