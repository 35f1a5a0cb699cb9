# Two commands on a fresh machine (see README):  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint bench clean floors

# torch==2.13.0 first: it is the local CPU build; installing a dependent first pulls a CUDA build.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/reasonlab demo --out runs/demo

lint: setup
	$(BIN)/ruff check reasonlab tests benchmarks
	$(BIN)/ruff format --check reasonlab tests benchmarks

test: setup lint
	$(BIN)/pytest -n 2 --dist worksteal --durations=15

bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/verify_throughput.py
	$(BIN)/python benchmarks/rl_step.py

# The lowest transformers and math-verify that pyproject.toml admits (its `>=` floors, read from
# it), in a throwaway venv, against a fast subset of the tests. Not part of `make test`.
FLOORS     ?= /tmp/floors
FLOOR_PINS := $(shell sed -n 's/^ *"\(transformers\|math-verify\[[^]]*\]\)>=\([^"]*\)",.*/\1==\2/p' pyproject.toml)

floors:
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install --quiet torch==2.13.0
	$(FLOORS)/bin/pip install --quiet $(foreach pin,$(FLOOR_PINS),'$(pin)') -e '.[dev]'
	$(FLOORS)/bin/pip list 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|math-verify) '
	PYTHONPATH=$(CURDIR) $(FLOORS)/bin/pytest -p no:cacheprovider tests/test_rollout.py \
		tests/test_models.py tests/test_trainer.py tests/test_math_verify.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
