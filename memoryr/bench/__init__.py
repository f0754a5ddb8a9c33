"""Benchmarks: timings of the memory reward, evaluation, training steps and sweeps; they print figures and assert nothing."""
