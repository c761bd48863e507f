"""docs/architecture.md's dependency direction: pure modules never load ray, vllm or deepspeed."""

import json
import subprocess
import sys

PURE = [
    "diadem_ray.types",
    "diadem_ray.config",
    "diadem_ray.grpo",
    "diadem_ray.packing",
    "diadem_ray.rewards.normalize",
    "diadem_ray.rewards.align",
    "diadem_ray.rewards.metrics",
    "diadem_ray.rewards.extract",
    "diadem_ray.rewards.speakers",
    "diadem_ray.rewards.components",
    "diadem_ray.rewards.compose",
    "diadem_ray.rewards.benchmark",
    "diadem_ray.data.schema",
    "diadem_ray.data.shards",
    "diadem_ray.data.cursor",
    "diadem_ray.data.feed",
    "diadem_ray.data.clip_cache",
    "diadem_ray.data.media_refs",
    "diadem_ray.cli",
]
HEAVY = ["ray", "vllm", "deepspeed"]


def test_pure_modules_do_not_import_ray_vllm_deepspeed():
    code = (
        "import importlib, json, sys\n"
        f"for m in {PURE!r}: importlib.import_module(m)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_types_and_config_stay_stdlib_plus_omegaconf():
    code = (
        "import json, sys\nimport diadem_ray.types, diadem_ray.config\n"
        "print(json.dumps([m for m in ('torch', 'numpy', 'rapidfuzz') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
