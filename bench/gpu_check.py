"""One GPU, a few minutes: the cluster path's GPU pieces checked without Ray or vLLM.

On a machine with one CUDA GPU and the image's PyTorch and transformers (nothing fetched there),
from the repository root, with the kit of ``bench/gpu_kit.py`` beside it (``make gpu-kit``)::

    python3 bench/gpu_check.py --kit .gpu-kit --out "$OUT/gpu_check.txt"     # or: make gpu-check

It installs the kit's wheels into ``--target`` (first on ``sys.path``; the image is not touched),
then stops with ``no CUDA`` when there is no GPU (the CPU dry run that ``make test`` runs ends there),
else runs each check in its own process (a crash or a hang costs one line) and prints one line per
check, ``PASS``/``FAIL``, then ``N passed, M failed``; the same lines and every check's figures (JSON)
go to ``--out``. ``--device cpu`` runs the same checks on CPU with tiny models (gloo, float32), to
exercise the script where there is no GPU.

Checks: the ``tests/gpu`` tier; a DeepSpeed learner step (world size 1, NCCL, bf16) under ZeRO-2 and
ZeRO-3 on the SmolLM2-135M architecture and on a tiny random Qwen2.5-Omni thinker with video and
audio; the transformers rollout engine on CUDA; engine-vs-learner log-prob agreement in float32
(≤ 1e-4) and in bf16 (the gap is recorded); SFT loss falling over steps on one batch; a short GRPO
loop (engine samples → reward → learner step → weights back into the engine) whose reward rises.
Peak GPU memory and tokens/s are recorded per check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    "gpu-tier",
    "learner-smollm2-zero2",
    "learner-smollm2-zero3",
    "learner-qwen-zero2",
    "learner-qwen-zero3",
    "engine-hf",
    "agreement-fp32",
    "agreement-bf16",
    "sft-loss-falls",
    "grpo-loop",
]
RESULT = "RESULT "


class NoCuda(RuntimeError):
    pass


# ---- the parent: install, then one process per check --------------------------------------------


def install(kit: Path, target: Path) -> str:
    """Every wheel and source archive of ``kit/wheels`` into ``target`` (no dependencies, no index);
    done once per target (a stamp names the kit's files)."""
    every = sorted((kit / "wheels").glob("*"))
    if not every:
        raise FileNotFoundError(f"{kit / 'wheels'}: no wheels; build the kit first (make gpu-kit)")
    wheels = [w for w in every if _fits(w)]
    other = [w.name for w in every if w not in wheels]
    note = f"; {len(other)} built for another Python left out ({', '.join(other)})" if other else ""
    stamp = target / ".kit"
    names = "\n".join(w.name for w in wheels)
    if stamp.is_file() and stamp.read_text() == names:
        return f"{len(wheels)} packages already in {target}{note}"
    target.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DS_BUILD_OPS="0", PIP_NO_INDEX="1")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--upgrade",
        "--target",
        str(target),
        *map(str, wheels),
    ]
    subprocess.run(cmd, check=True, env=env)
    stamp.write_text(names)
    return f"{len(wheels)} packages into {target}{note}"


def _fits(path: Path) -> bool:
    """A source archive, or a wheel this interpreter can install."""
    if not path.name.endswith(".whl"):
        return True
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    supported = set(sys_tags())
    return any(tag in supported for tag in parse_wheel_filename(path.name)[3])


def child_env(target: Optional[Path]) -> Dict[str, str]:
    paths = ([str(target)] if target else []) + [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )


def run_check(name: str, args: argparse.Namespace, env: Dict[str, str]) -> Tuple[bool, str, Dict[str, Any]]:
    cmd = [sys.executable, __file__, "--check", name, "--device", args.device, "--work", args.work, "--kit", args.kit]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.check_timeout_s, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {args.check_timeout_s:.0f} s", {}
    lines = [line for line in p.stdout.splitlines() if line.startswith(RESULT)]
    if not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return False, f"exit {p.returncode}: " + " | ".join(tail), {}
    out = json.loads(lines[-1][len(RESULT) :])
    return bool(out["ok"]), str(out["detail"]), dict(out.get("metrics", {}))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kit", default=str(ROOT / ".gpu-kit"))
    ap.add_argument("--target", default="/tmp/diadem-gpu-site", help="where the kit's wheels are installed")
    ap.add_argument("--out", default="gpu_check.txt")
    ap.add_argument("--work", default="/tmp/diadem-gpu-work", help="models built here")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--only", nargs="*", default=None, help="run only these checks")
    ap.add_argument("--check-timeout-s", type=float, default=240.0)
    ap.add_argument("--check", default=None, help=argparse.SUPPRESS)  # one check, in this process
    args = ap.parse_args(argv)
    if args.check:
        return child(args)
    lines: List[str] = []
    figures: Dict[str, Any] = {}

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    t0 = time.perf_counter()
    kit = Path(args.kit)
    try:
        say(f"PASS install: {install(kit, Path(args.target))} ({time.perf_counter() - t0:.0f} s)")
        target: Optional[Path] = Path(args.target)
    except Exception as exc:
        say(f"FAIL install: {type(exc).__name__}: {exc}")
        target = None
    env = child_env(target)
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env)
    devices = probe.stdout.strip()
    if probe.returncode != 0:
        say(f"FAIL device: torch or transformers does not import: {probe.stderr.strip()[-300:]}")
        _finish(args.out, lines, figures)
        return 1
    if args.device == "cuda" and not devices.startswith("cuda"):
        say(
            f"FAIL cuda: no CUDA: torch.cuda.is_available() is False here ({devices or probe.stderr.strip()[-200:]}); "
            "run this on the GPU machine, or pass --device cpu to exercise the checks on CPU"
        )
        _finish(args.out, lines, figures)
        return 2
    say(f"PASS device: {devices}")
    for name in args.only or CHECKS:
        t = time.perf_counter()
        ok, detail, metrics = run_check(name, args, env)
        metrics["wall_s"] = round(time.perf_counter() - t, 1)
        figures[name] = metrics
        say(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({metrics['wall_s']:.0f} s)")
    _finish(args.out, lines, figures)
    return 0 if all(line.startswith("PASS") for line in lines) else 1


_PROBE = (
    "import torch, transformers; c = torch.cuda.is_available(); "
    "print(('cuda ' + torch.cuda.get_device_name(0) if c else 'cpu') + f', torch {torch.__version__}, "
    "transformers {transformers.__version__}')"
)


def _finish(out: str, lines: List[str], figures: Dict[str, Any]) -> None:
    passed = sum(line.startswith("PASS") for line in lines)
    summary = f"{passed} passed, {len(lines) - passed} failed"
    print(summary, flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join([*lines, summary, "", json.dumps(figures, indent=1, sort_keys=True)]) + "\n")


# ---- one check, in a child process ---------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise NoCuda("no CUDA in the check's process")
    fn = _CHECKS[args.check]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        ok, detail, metrics = fn(work=work, kit=Path(args.kit), cuda=cuda)
    except Exception as exc:  # reported as the check's line
        ok, detail, metrics = False, f"{type(exc).__name__}: {str(exc)[:300]}", {}
    if cuda:
        metrics["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    print(RESULT + json.dumps({"ok": ok, "detail": detail, "metrics": metrics}), flush=True)
    return 0


def _smollm2(work: Path, kit: Path, cuda: bool) -> Path:
    """SmolLM2-135M's architecture at random (on CPU: the tiny test LM), saved once under ``work``."""
    out = work / ("smollm2" if cuda else "tiny_lm")
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    if not cuda:
        from diadem_ray.models.tiny_lm import build_tiny_lm

        return Path(build_tiny_lm(out))
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(kit / "smollm2")
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    for f in (kit / "smollm2").iterdir():
        if f.name != "config.json":
            shutil.copy2(f, out / f.name)
    return out


def _thinker(work: Path) -> Tuple[Path, Any, Any]:
    from diadem_ray.models import qwen2_5_omni as q

    return q.build_tiny_thinker(work / "thinker")


def _clip(tok: Any, fe: Any, seed: int) -> Tuple[List[int], Dict[str, Any]]:
    """A 2-s clip's thinker inputs from random frames and a tone (no decoding: PyAV is not needed)."""
    import numpy as np

    from diadem_ray.models import qwen2_5_omni as q

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (8, 56, 84, 3), dtype=np.uint8)
    audio = (0.1 * np.sin(np.arange(32_000) * 2 * np.pi * (180 + 40 * seed) / 16_000)).astype(np.float32)
    s = q.Settings(max_pixels=16 * 28 * 28, min_pixels=4 * 28 * 28)
    inputs = q.build_inputs(frames, np.arange(8) / 4, audio, "Who says what?", tokenizer=tok, feature_extractor=fe, s=s)
    return q.split_inputs(inputs)


def _learner(model: Path, *, cuda: bool, zero: int, bf16: bool, family: str = "tiny_av", lr: float = 1e-5) -> Any:
    from diadem_ray.actors.learner import Learner

    learner = Learner(
        rank=0,
        world_size=1,
        model_path=str(model),
        zero_stage=zero,
        comm_backend="nccl" if cuda else "gloo",
        bf16=bf16 and cuda,
        lr=lr,
        micro_batch_size=4,
        need_reference=False,
        family=family,
    )
    learner.setup(*learner.node_address(True))
    return learner


def _tokens(n: int, length: int, vocab: int, seed: int, banned: Tuple[int, ...] = ()) -> List[List[int]]:
    """``n`` random token sequences from ``[3, vocab)`` without ``banned`` (media placeholders)."""
    import random

    rng = random.Random(seed)
    allowed = [t for t in range(3, vocab) if t not in set(banned)]
    return [[rng.choice(allowed) for _ in range(length)] for _ in range(n)]


def _sync(device_sync: bool) -> None:
    if device_sync:
        import torch

        torch.cuda.synchronize()


def check_gpu_tier(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    last = (p.stdout.strip().splitlines() or ["no output"])[-1]
    return p.returncode == 0, f"pytest tests/gpu: {last}", {}


def _learner_step(
    model: Path,
    *,
    cuda: bool,
    zero: int,
    family: str,
    media: Optional[List[Any]] = None,
    prompts: Optional[List[List[int]]] = None,
    banned: Sequence[int] = (),
) -> Tuple[bool, str, Dict[str, Any]]:
    import math

    from diadem_ray.types import GrpoBatch

    learner = _learner(model, cuda=cuda, zero=zero, bf16=True, family=family)
    vocab = learner.engine.module.config.get_text_config().vocab_size
    n, plen, rlen = (8, 512, 128) if cuda and media is None else (4, 32, 16)
    prompts = prompts or _tokens(n, plen, vocab, 0)
    responses = _tokens(len(prompts), rlen, vocab, 1, banned=tuple(banned))
    tokens = float(sum(len(r) for r in responses))
    sft = learner.sft_step(prompts, responses, num_tokens=tokens, media=media)["learner/sft_loss_part"]
    adv = [1.0 if i % 2 else -1.0 for i in range(len(prompts))]
    _sync(cuda)
    t = time.perf_counter()
    g = learner.grpo_step(
        GrpoBatch.of(prompts, responses, adv, media=media),
        num_tokens=tokens,
        num_sequences=float(len(prompts)),
        max_response_len=rlen,
    )
    _sync(cuda)
    dt = time.perf_counter() - t
    seq = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    loss = g["learner/loss_part"]
    ok = math.isfinite(sft) and math.isfinite(loss)
    m = {
        "grpo_step_s": round(dt, 3),
        "tokens_per_s": round(seq / dt, 1),
        "sft_loss": sft,
        "grpo_loss": loss,
        "sequences": len(prompts),
    }
    precision = "bf16" if cuda else "fp32"
    return ok, f"ZeRO-{zero} {precision}: SFT loss {sft:.3f}, GRPO step {dt:.2f} s, {seq / dt:,.0f} tokens/s", m


def check_learner_smollm2(zero: int) -> Callable[..., Tuple[bool, str, Dict[str, Any]]]:
    def run(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
        return _learner_step(_smollm2(work, kit, cuda), cuda=cuda, zero=zero, family="tiny_av")

    return run


def check_learner_qwen(zero: int) -> Callable[..., Tuple[bool, str, Dict[str, Any]]]:
    def run(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
        from diadem_ray.models.families import get_family

        path, tok, fe = _thinker(work)
        clips = [_clip(tok, fe, s) for s in range(2)]
        prompts = [ids for ids, _ in clips for _ in range(2)]
        media = [m for _, m in clips for _ in range(2)]
        banned = get_family("qwen2_5_omni").media_token_ids(tok)
        return _learner_step(
            path, cuda=cuda, zero=zero, family="qwen2_5_omni", media=media, prompts=prompts, banned=banned
        )

    return run


def _engine(model: Path, dtype: str) -> Any:
    from diadem_ray.actors.rollout import RolloutWorker

    engine = RolloutWorker(model_path=str(model), backend="hf", dtype=dtype, seed=0)
    engine.setup()
    return engine


def _prompts(n: int, length: int, vocab: int) -> List[Any]:
    from diadem_ray.types import Prompt

    return [Prompt(f"p{i}", tuple(ids)) for i, ids in enumerate(_tokens(n, length, vocab, 7))]


def check_engine(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
    engine = _engine(_smollm2(work, kit, cuda), "bfloat16" if cuda else "float32")
    vocab = engine.hf.config.vocab_size
    prompts = _prompts(8, 128, vocab)
    engine.generate(prompts[:1], samples_per_prompt=1, max_new_tokens=4, seed=0)  # warm-up
    _sync(cuda)
    t = time.perf_counter()
    out = engine.generate(prompts, samples_per_prompt=4, max_new_tokens=64, temperature=1.0, seed=1)
    _sync(cuda)
    dt = time.perf_counter() - t
    new = sum(len(r.token_ids) for r in out)
    ok = len(out) == 32 and new > 0 and all(len(r.logprobs) == len(r.token_ids) for r in out)
    return (
        ok,
        f"{len(out)} samples, {new} new tokens in {dt:.2f} s ({new / dt:,.0f} tokens/s)",
        {"new_tokens": new, "tokens_per_s": round(new / dt, 1)},
    )


def check_agreement(dtype: str) -> Callable[..., Tuple[bool, str, Dict[str, Any]]]:
    def run(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
        model = _smollm2(work, kit, cuda)
        bf16 = dtype == "bfloat16" and cuda
        engine = _engine(model, "bfloat16" if bf16 else "float32")
        prompts = _prompts(4, 64, engine.hf.config.vocab_size)
        out = engine.generate(prompts, samples_per_prompt=2, max_new_tokens=24, temperature=1.0, seed=3)
        learner = _learner(model, cuda=cuda, zero=2, bf16=bf16)
        got = learner.compute_logprobs([list(r.prompt_token_ids) for r in out], [list(r.token_ids) for r in out])
        gap = max((abs(a - b) for r, lp in zip(out, got) for a, b in zip(r.logprobs, lp)), default=float("nan"))
        if not bf16:
            return gap <= 1e-4, f"float32: largest per-token gap {gap:.2e} (bound 1e-4)", {"max_abs_gap": gap}
        return gap == gap, f"bf16: largest per-token gap {gap:.2e} (recorded)", {"max_abs_gap": gap}

    return run


def check_sft_loss_falls(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
    model = _smollm2(work, kit, cuda)
    learner = _learner(model, cuda=cuda, zero=2, bf16=True, lr=1e-4 if cuda else 1e-3)
    vocab = learner.engine.module.config.vocab_size
    prompts, responses = _tokens(8, 64, vocab, 0), _tokens(8, 32, vocab, 1)
    losses = [learner.sft_step(prompts, responses, num_tokens=256.0)["learner/sft_loss_part"] for _ in range(6)]
    return losses[-1] < losses[0], "SFT loss " + " → ".join(f"{x:.3f}" for x in losses), {"losses": losses}


def check_grpo_loop(*, work: Path, kit: Path, cuda: bool) -> Tuple[bool, str, Dict[str, Any]]:
    """Reward: the share of a sample's tokens in a fixed eighth of the vocabulary; engine samples,
    the learner steps on group advantages, the weights go back into the engine."""
    import torch

    from diadem_ray import grpo
    from diadem_ray.types import GrpoBatch

    model = _smollm2(work, kit, cuda)
    engine = _engine(model, "float32")
    learner = _learner(model, cuda=cuda, zero=2, bf16=False, lr=3e-4 if cuda else 3e-3)
    vocab = engine.hf.config.vocab_size
    prompts = _prompts(4, 32, vocab)
    rewards, losses = [], []
    for step in range(8):
        out = engine.generate(prompts, samples_per_prompt=8, max_new_tokens=16, temperature=1.0, seed=100 + step)
        r = torch.tensor([sum(t % 8 == 0 for t in x.token_ids) / max(1, len(x.token_ids)) for x in out]).view(4, 8)
        adv, _ = grpo.group_advantages(r)
        batch = GrpoBatch.of(
            [x.prompt_token_ids for x in out],
            [x.token_ids for x in out],
            adv.flatten().tolist(),
            rollout_logprobs=[x.logprobs for x in out],
        )
        m = learner.grpo_step(batch, num_tokens=float(batch.num_tokens), num_sequences=32.0, max_response_len=16)
        engine.load_weight_buckets(step + 1, learner.export_weights())
        rewards.append(float(r.mean()))
        losses.append(m["learner/loss_part"])
    ok = sum(rewards[-2:]) > sum(rewards[:2])
    return ok, "mean reward " + " → ".join(f"{x:.3f}" for x in rewards), {"rewards": rewards, "losses": losses}


_CHECKS: Dict[str, Callable[..., Tuple[bool, str, Dict[str, Any]]]] = {
    "gpu-tier": check_gpu_tier,
    "learner-smollm2-zero2": check_learner_smollm2(2),
    "learner-smollm2-zero3": check_learner_smollm2(3),
    "learner-qwen-zero2": check_learner_qwen(2),
    "learner-qwen-zero3": check_learner_qwen(3),
    "engine-hf": check_engine,
    "agreement-fp32": check_agreement("float32"),
    "agreement-bf16": check_agreement("bfloat16"),
    "sft-loss-falls": check_sft_loss_falls,
    "grpo-loop": check_grpo_loop,
}


if __name__ == "__main__":
    sys.exit(main())
