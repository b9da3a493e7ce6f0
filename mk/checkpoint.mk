# Checkpoint targets. Included by the main Makefile.
.PHONY: bench-checkpoint

# Save time (sync / async) of a ResNet-50-sized BiP state vs one BiP iteration: table + bench/checkpoint.json.
bench-checkpoint: $(VENV)/.installed
	$(PY) bench/bench_checkpoint.py
