# Data preparation and the loader benchmark (see docs/data.md).
# make prep-imagenet SRC=/data/ILSVRC OUT=data/imagenet FORMAT=both   (FORMAT: lmdb | ffcv | memory | both | all)
.PHONY: prep-imagenet prep-tiny-imagenet prep-cifar10 prep-cifar100 prep-folder prep-fashion prep-demo bench-data test-data

PREP_ARGS ?=
DEMO_FORMAT := memory,lmdb
WORKERS ?= $(shell nproc)

prep-imagenet: .venv/.installed
	$(PY) -m data_prep imagenet --src $(SRC) --out $(or $(OUT),data/imagenet) --format $(or $(FORMAT),both) --workers $(WORKERS) $(PREP_ARGS)

prep-tiny-imagenet: .venv/.installed
	$(PY) -m data_prep tiny-imagenet --src $(SRC) --out $(or $(OUT),data/tiny_imagenet) --format $(or $(FORMAT),lmdb) --workers $(WORKERS) $(PREP_ARGS)

prep-cifar10: .venv/.installed
	$(PY) -m data_prep cifar10 --src $(SRC) --out $(or $(OUT),data/cifar10) --format $(or $(FORMAT),memory) --workers $(WORKERS) $(PREP_ARGS)

prep-cifar100: .venv/.installed
	$(PY) -m data_prep cifar100 --src $(SRC) --out $(or $(OUT),data/cifar100) --format $(or $(FORMAT),memory) --workers $(WORKERS) $(PREP_ARGS)

prep-folder: .venv/.installed
	$(PY) -m data_prep folder --src $(SRC) --out $(OUT) --format $(or $(FORMAT),lmdb) --workers $(WORKERS) $(PREP_ARGS)

# Fashion-MNIST from the Debian package dataset-fashion-mnist (scripts/setup_env.sh installs it), or SRC=.
prep-fashion: .venv/.installed
	$(PY) -m data_prep fashion-mnist --src $(or $(SRC),/usr/share/datasets/fashion-mnist) --out $(or $(OUT),data/fashion_mnist) --format $(or $(FORMAT),memory) --workers $(WORKERS) $(PREP_ARGS)

# The demo set (scikit-learn digits): data/digits/{train,val}.npz and the LMDB files. Fast when done.
prep-demo: .venv/.installed
	$(PY) -m data_prep digits --out data/digits --format $(or $(FORMAT),$(DEMO_FORMAT)) --workers $(WORKERS) $(PREP_ARGS)

bench-data: .venv/.installed
	$(PY) bench/bench_data.py $(BENCH_ARGS)

test-data: .venv/.installed
	$(PY) -m pytest -q tests/data_prep tests/data
