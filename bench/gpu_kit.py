"""The kit `bench/gpu_check.py` carries to a GPU machine that can fetch nothing: wheels of what its
image lacks and the files of the models it checks, in one folder (default ``.gpu-kit/``, git-ignored),
under the 64 MiB that travel with a device run.

    make gpu-kit                  # or: .venv/bin/python bench/gpu_kit.py --out .gpu-kit

What goes in (the image has Python 3.12, PyTorch with CUDA, transformers, tokenizers, safetensors,
numpy, pytest; no Ray, vLLM or DeepSpeed):

* ``wheels/``: DeepSpeed (its source archive: the machine builds it without compiled ops, which the
  learner does not use), the pydantic it needs and the small packages it imports, peft, the
  transformers this project pins, and this package (``pip wheel .``); compiled wheels for CPython 3.12
  on manylinux x86_64.
* ``smollm2/``: SmolLM2-135M's config and tokenizer (no weights: the check initialises the same
  architecture at random, 135 M parameters, so timings and memory are those of the real model).

Everything else the check needs (the tiny random Qwen2.5-Omni thinker, clips' media) it builds there.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 64 << 20  # what travels with one device run
# pure-Python packages: any platform
PURE = [
    "transformers==5.19.0",
    "peft==0.21.2",
    "hjson==3.1.0",
    "pydantic==2.14.4",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
]
# compiled: CPython 3.12, manylinux x86_64 (the GPU image's interpreter)
COMPILED = ["pydantic-core==2.50.5"]
SOURCE = ["deepspeed==0.19.8"]
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def build_kit(out: Path, *, smollm2_dir: Path | None = None) -> Dict[str, int]:
    """Fill ``out`` (replaced) with the kit; returns its files' sizes in bytes by relative path."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), *PURE)
    _pip(
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux2014_x86_64",
        "-d",
        str(wheels),
        *COMPILED,
    )
    _pip("download", "--no-deps", "--no-binary=:all:", "-d", str(wheels), *SOURCE)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT))
    if smollm2_dir is None:
        from diadem_ray.models.smollm2 import smollm2_checkpoint

        smollm2_dir = smollm2_checkpoint()
    model = out / "smollm2"
    model.mkdir()
    for name in MODEL_FILES:
        if (Path(smollm2_dir) / name).is_file():
            shutil.copy2(Path(smollm2_dir) / name, model / name)
    if not (model / "config.json").is_file() or not (model / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{smollm2_dir}: config.json or tokenizer.json missing (a converted SmolLM2 checkpoint)"
        )
    return sizes(out)


def sizes(kit: Path) -> Dict[str, int]:
    """Bytes of every file under ``kit``, by path relative to it."""
    return {str(p.relative_to(kit)): p.stat().st_size for p in sorted(Path(kit).rglob("*")) if p.is_file()}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / ".gpu-kit"))
    args = ap.parse_args(argv)
    files = build_kit(Path(args.out))
    total = sum(files.values())
    for name, n in files.items():
        print(f"{n / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB in {args.out} (a device run carries at most {LIMIT_BYTES >> 20} MiB)")
    return 0 if total <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
