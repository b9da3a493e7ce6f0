# The two commands: `make demo` and `make test`. Each builds the virtual environment on first use.
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export PYTHONUNBUFFERED := 1

.PHONY: env test demo bench-step bench gpu-check clean-runs

$(VENV)/.installed: requirements.txt requirements-extra.txt setup.py scripts/setup_env.sh
	VENV=$(VENV) bash scripts/setup_env.sh

env: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

demo: $(VENV)/.installed prep-demo
	$(PY) -m launcher.demo

# Single-process rows (bench/step.json), then 2-worker DDP / DeepSpeed rows (bench/step_dist.json).
bench-step: $(VENV)/.installed
	$(PY) bench/bench_step.py
	$(PY) bench/bench_step_dist.py

# First run on a machine with one GPU (under 5 minutes on one H100): checks + timings, table + bench/gpu.json.
# Without CUDA it runs at tiny sizes on the CPU (docs/gpu.md).
gpu-check: $(VENV)/.installed
	$(PY) bench/gpu_check.py

# Every benchmark; each prints its table and writes bench/<name>.json.
bench: bench-step bench-data bench-compact bench-checkpoint

clean-runs:
	rm -rf runs/demo

-include mk/*.mk
