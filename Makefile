# xaibench — the two commands a new user needs: `make quickstart` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install quickstart test test-fast mutants lint bench train train-vit train-fashion cnn-vs-vit clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/xai run configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Swap each method's formula for its sibling's, one at a time, and report which test kills it (scripts/mutants.py)
mutants: $(STAMP)
	$(BIN)/python scripts/mutants.py

lint: $(STAMP)
	$(BIN)/ruff check xaibench tests bench scripts
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Retrain the built-in model (two stages; see xaibench/models/builtin/synthetic-cnn.json)
train: $(STAMP)
	$(BIN)/python scripts/train_builtin.py
	$(BIN)/python scripts/train_builtin.py --init xaibench/models/builtin/synthetic-cnn.pt --low-res-epochs 0 --epochs 6 --lr 2e-3 --no-augment

# Retrain the built-in vision transformer: the two seeded stages that made the shipped checkpoint (see
# xaibench/models/builtin/synthetic-vit.json; 4 of 14 scheduled epochs, then a 3-epoch cosine fine-tune)
train-vit: $(STAMP)
	$(BIN)/python scripts/train_builtin_vit.py --epochs 40 --lr 5e-4 --conv-stem 16 32 64 128 --threads 2

cnn-vs-vit: $(STAMP)
	$(BIN)/python scripts/cnn_vs_vit.py

train-fashion: $(STAMP)
	$(BIN)/python scripts/train_fashion_mnist.py

clean:
	rm -rf $(VENV) results .pytest_cache
