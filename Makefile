# The two set-up commands of the README: `make demo` and `make test`. Each creates or refreshes
# .venv itself (only when requirements/cpu.txt or pyproject.toml changed), then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline by design: nothing loads weights or data from a hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0
export VLLM_CPU_KVCACHE_SPACE ?= 1
export VLLM_ENABLE_V1_MULTIPROCESSING ?= 0
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: venv lint test test-heavy test-cluster test-unit test-ray demo bench gpu-kit gpu-check clean-venv

venv: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml cluster/install.sh
	@echo ">> creating/refreshing $(VENV) (first time: about 4 minutes, 4-5 GB)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The same recipe builds the cluster images (cluster/Dockerfile).
	bash cluster/install.sh cpu $(PY) --editable
	@# Compiled here on every core, not left to first import: machines with PYTHONDONTWRITEBYTECODE=1
	@# would otherwise recompile torch/vllm/ray from source in every process.
	@# A few vendored files in site-packages are templates, not Python: their errors are expected.
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $(STAMP)

# Lint, format and type gates (seconds); `make test` runs them first, so CI fails on a violation.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest tests -q --durations=15 -m "not heavy and not cluster"

# Multi-node tier (about 5 minutes): CI runs it after `make test`.
test-cluster: $(STAMP)
	$(PY) -m pytest tests -q --durations=5 -m cluster

test-heavy: $(STAMP)
	$(PY) -m pytest tests -q -m heavy

# The one-GPU check (bench/gpu_check.py): `make gpu-kit` here (wheels and model files, <= 64 MiB),
# `make gpu-check` on the GPU machine, which needs no .venv: its image's python3 has torch with CUDA.
gpu-kit: $(STAMP)
	$(PY) bench/gpu_kit.py --out .gpu-kit

gpu-check:
	python3 bench/gpu_check.py --kit .gpu-kit --out $${OUT:-.}/gpu_check.txt

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-ray: $(STAMP)
	$(PY) -m pytest tests/ray_local -q -m ray

demo: $(STAMP)
	$(VENV)/bin/diadem-ray demo

bench: $(STAMP)
	$(PY) bench/reward_throughput.py
	$(PY) bench/rollout_throughput.py
	$(PY) bench/weight_sync.py
	$(PY) bench/vllm_reload.py
	$(PY) bench/serve_load.py
	$(PY) bench/data_throughput.py
	$(PY) bench/data_plane.py
	$(PY) bench/learner_step.py
	$(PY) bench/learner_step.py --compare prefix --samples 4 --sequences 16 --prompt 127 --repeats 3
	$(PY) bench/peer_trl.py

clean-venv:
	rm -rf $(VENV)
