# Research targets (monitoring, baselines sweep, compact export). Included by the main Makefile.
.PHONY: tensorboard sweep-demo sweep-first-order sweep-digits sweep-fashion bench-compact

TB_PORT ?= 6006
# `make tensorboard RUN=runs/demo` (a run folder or any folder above several): serves every tb/ below it.
tensorboard: $(VENV)/.installed
	@test -n "$(RUN)" || { echo "usage: make tensorboard RUN=<run folder, e.g. runs/demo>"; exit 2; }
	$(VENV)/bin/tensorboard --logdir "$(RUN)" --port $(TB_PORT) --bind_all

# Compact export of a channel-pruned ResNet-18 (k = 0.5): params, MACs, latency side by side.
bench-compact: $(VENV)/.installed
	$(PY) bench/bench_compact.py

# BiP, HYDRA, OMP, IMP on digits over 4 sparsities: runs/sweep_demo/sweep/{results.csv,accuracy_vs_sparsity.png}
sweep-demo: $(VENV)/.installed prep-demo
	$(PY) -m launcher.sweep --sweep configs/sweeps/digits_demo.yaml

# Exact vs first-order BiP (equal steps, images, compute), HYDRA and OMP on digits over 6 sparsities:
# runs/digits_first_order/sweep/{results.csv,accuracy_vs_sparsity.png}
sweep-first-order: $(VENV)/.installed prep-demo
	$(PY) -m launcher.sweep --sweep configs/sweeps/digits_first_order.yaml

# Every method (BiP, BiP with the old default, HYDRA, OMP, IMP, random, first-order BiP) at 6 sparsities
# (80 % ... 99 %) with seeds, one pretrained model each: runs/<name>/sweep/{results.csv,summary.md,...}.
# Resumable: rerun to continue a stopped sweep. Digits: 3 seeds, about 45 minutes each on 2 CPU cores.
sweep-digits: $(VENV)/.installed prep-demo
	$(PY) -m launcher.sweep --sweep configs/sweeps/digits_seeds.yaml

# Fashion-MNIST: 2 seeds, sized for <= 60 minutes per seed on 2 CPU cores (configs/sweeps/fashion.yaml).
sweep-fashion: $(VENV)/.installed prep-fashion
	$(PY) -m launcher.sweep --sweep configs/sweeps/fashion.yaml
