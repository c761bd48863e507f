"""Held-out evaluation, the exported policy after each trained stage, and the final report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from diadem_ray.config import TrainConfig
from diadem_ray.driver.clips import RunClips
from diadem_ray.driver.resources import Resources
from diadem_ray.driver.state import DriverState
from diadem_ray.driver.state import say as _say
from diadem_ray.types import Clip

# (clips, tag, **sampling) -> [(clip, rollout)]: the driver's way of captioning a list of clips
Generate = Callable[..., List[Tuple[Clip, Any]]]


class Evaluator:
    """Greedy captions of the held-out clips scored DiaDemBench-style (once per policy_version),
    logged to MLflow with every caption; policy export; the report printed at the end."""

    def __init__(self, cfg: TrainConfig, res: Resources, data: RunClips, *, out: Path, generate: Generate):
        self.cfg, self.res, self.data, self.out, self.generate = cfg, res, data, out, generate
        # held-out clip_id -> difficulty bucket (stages.profile.held_out): scores per bucket too
        self.held_out_buckets: Dict[str, str] = {}

    def export_policy(self, stage: str) -> None:
        """``runs/<name>/policy``: the weights after ``stage`` as a servable directory (replaced
        atomically after each trained stage; ``diadem-ray serve --checkpoint runs/<name>``)."""
        t0 = time.perf_counter()
        d, res = self.cfg.data, self.res
        path = res.learners.save_policy(
            str(self.out / "policy"),
            {
                "family": self.cfg.model.family,
                "policy_version": res.rollouts.version,
                "stage": stage,
                "learner_step": res.learners.step,
                "run": self.cfg.run.name,
                "frontend_version": res.family.policy_input_version(),
                "frames_per_clip": d.frames_per_clip,
                "sample_rate_hz": d.audio_sample_rate_hz,
                "max_prompt_tokens": self.cfg.model.max_prompt_tokens,
                "max_new_tokens": self.cfg.stages.eval.max_new_tokens,
            },
        )
        _say(f"policy after {stage} exported to {path} ({time.perf_counter() - t0:.1f} s)")

    def evaluate(self, label: str, state: DriverState) -> Dict[str, float]:
        """REF/ASR F1 × 100 of the current policy under ``label`` in ``state.evals`` (reused when an
        evaluation of the same policy_version exists)."""
        from diadem_ray.rewards.benchmark import evaluate, format_report

        if label in state.evals:
            return state.evals[label]
        version = self.res.rollouts.version
        same = [k for k, v in state.evals.items() if v.get("policy_version") == version]
        if same:  # e.g. the eval stage right after grpo_stage2: the same weights, the same greedy captions
            state.evals[label] = dict(state.evals[same[0]])
            _say(f"eval {label}: same policy_version as {same[0]!r}; scores reused")
            return state.evals[label]
        e, clips, tracker = self.cfg.stages.eval, self.data.clips, self.res.tracker
        t0 = time.perf_counter()
        rollouts = self.generate(
            [clips[i] for i in self.data.eval_ids],
            "eval",
            samples_per_prompt=1,
            max_new_tokens=e.max_new_tokens,
            temperature=0.0,
        )
        preds = [{"video_id": c.clip_id, "pred": ro.text} for c, ro in rollouts]
        res = evaluate(self.data.annotations, preds)
        preds = sorted(preds, key=lambda x: x["video_id"])
        scores = {
            "ref_f1": 100 * res.overall.ref_f1,
            "asr_f1": 100 * res.overall.asr_f1,
            "clips": float(res.overall.clips),
            "policy_version": version,
        }
        by_bucket = self._by_bucket(preds)
        scores.update(by_bucket)
        state.evals[label] = scores
        tracker.log_metrics(
            {
                f"eval/{label}/ref_f1": scores["ref_f1"],
                f"eval/{label}/asr_f1": scores["asr_f1"],
                "eval/ref_f1": scores["ref_f1"],
                "eval/asr_f1": scores["asr_f1"],
                f"eval/{label}/seconds": time.perf_counter() - t0,
                **{f"eval/{label}/{k}": v for k, v in by_bucket.items()},
                **{f"eval/{k}": v for k, v in by_bucket.items()},
            },
            step=state.global_step,
        )
        tracker.log_text(format_report(res), f"eval/{label}/breakdown.txt")
        # Every greedy caption, in `diadem-ray eval --predictions` form: rescore them with another
        # extractor or speaker judge without regenerating (annotations: data.root/eval/annotations.jsonl).
        pred_file = self.out / "eval" / label / "predictions.jsonl"
        pred_file.parent.mkdir(parents=True, exist_ok=True)
        pred_file.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds), encoding="utf-8")
        tracker.log_artifact(pred_file, f"eval/{label}")
        tracker.log_text(
            "\n".join(json.dumps(s) for s in _samples(preds, res.rows, clips)[: e.sample_captions]),
            f"eval/{label}/sample_captions.jsonl",
        )
        _say(
            f"eval {label}: REF F1 {scores['ref_f1']:.1f}  ASR F1 {scores['asr_f1']:.1f}  ({res.overall.clips} "
            "held-out clips, "
            f"{time.perf_counter() - t0:.0f} s)" + _bucket_line(scores, self.cfg.stages.profile.bucket_names)
        )
        return scores

    def fill_buckets(self, state: DriverState) -> List[str]:
        """Per-bucket scores for the evaluations that ran before the held-out clips were profiled
        (the SFT policy's, evaluated before ``profile``), from their saved greedy captions: nothing
        is generated again. Logged to MLflow as ``eval/<label>/<bucket>/…``, and as
        ``eval/<bucket>/…`` for the evaluation of the current policy. Returns the labels filled."""
        names = self.cfg.stages.profile.bucket_names
        if not self.held_out_buckets:
            return []
        filled = []
        for label, scores in state.evals.items():
            if any(f"{b}/ref_f1" in scores for b in names):
                continue
            pred_file = self.out / "eval" / label / "predictions.jsonl"
            if pred_file.is_file():
                text = pred_file.read_text(encoding="utf-8")
                by_bucket = self._by_bucket([json.loads(line) for line in text.splitlines() if line.strip()])
            else:  # scores reused from an evaluation of the same policy_version (e.g. "final" after "sft")
                by_bucket = next(
                    (
                        {k: v for k, v in other.items() if "/" in k}
                        for other in state.evals.values()
                        if other.get("policy_version") == scores.get("policy_version") and other is not scores
                    ),
                    {},
                )
            if not by_bucket:
                continue
            scores.update(by_bucket)
            filled.append(label)
            metrics = {f"eval/{label}/{k}": v for k, v in by_bucket.items()}
            if scores.get("policy_version") == self.res.rollouts.version:
                metrics.update({f"eval/{k}": v for k, v in by_bucket.items()})
            if self.res.tracker is not None:
                self.res.tracker.log_metrics(metrics, step=state.global_step)
            _say(f"eval {label}: scores by held-out bucket from its saved captions" + _bucket_line(scores, names))
        return filled

    def _by_bucket(self, preds: List[Dict[str, str]]) -> Dict[str, float]:
        """``<bucket>/ref_f1``, ``<bucket>/asr_f1``, ``<bucket>/clips`` per held-out bucket (× 100)."""
        from diadem_ray.rewards.benchmark import evaluate

        out: Dict[str, float] = {}
        for b in self.cfg.stages.profile.bucket_names:
            ids = {c for c, bucket in self.held_out_buckets.items() if bucket == b}
            if not ids:
                continue
            res = evaluate(
                [a for a in self.data.annotations if a["video_id"] in ids], [p for p in preds if p["video_id"] in ids]
            )
            out.update(
                {
                    f"{b}/ref_f1": 100 * res.overall.ref_f1,
                    f"{b}/asr_f1": 100 * res.overall.asr_f1,
                    f"{b}/clips": float(res.overall.clips),
                }
            )
        return out

    def report(self, state: DriverState) -> None:
        """The table of every evaluation so far, printed and written to ``runs/<name>/results.txt``."""
        text = results_table(state.evals, self.cfg.stages.profile.bucket_names)
        (self.out / "results.txt").write_text(text + "\n")
        self.res.tracker.log_artifact(self.out / "results.txt")
        _say(f"held-out clips ({len(self.data.eval_ids)}), DiaDemBench-style F1 x100:\n{text}")
        _say(
            f"MLflow: mlflow ui --backend-store-uri {self.cfg.tracking.tracking_uri}   (run {self.res.tracker.run_id})"
        )


LABELS = ("untrained", "sft", "grpo_stage1", "grpo_stage2", "final")


def results_table(evals: Dict[str, Dict[str, float]], bucket_names: Sequence[str]) -> str:
    """The run's table: REF / ASR F1 (x100) per evaluated policy, each trained stage's change against
    the SFT policy (of the values as printed), then the same per held-out difficulty bucket where
    ``evals`` holds them (``<bucket>/ref_f1`` keys). ``evals``: label -> scores, as in the state."""
    lines = [f"{'policy':<14} {'REF F1':>7} {'ASR F1':>7}   change vs SFT (REF / ASR)"]
    sft = evals.get("sft")
    for label in LABELS:
        if label in evals:
            s = evals[label]
            line = f"{label:<14} {s['ref_f1']:7.1f} {s['asr_f1']:7.1f}"
            if sft is not None and label not in ("untrained", "sft"):
                ref, asr = (round(s[k], 1) - round(sft[k], 1) for k in ("ref_f1", "asr_f1"))  # as printed
                line += f"   {ref:+.1f} / {asr:+.1f}"
            lines.append(line)
    buckets = [b for b in bucket_names if any(f"{b}/ref_f1" in s for s in evals.values())]
    if buckets:
        lines.append("")
        lines.append("by held-out bucket (profiled pass rate), REF / ASR F1:")
        lines.append(f"{'policy':<14} " + " ".join(f"{b:>13}" for b in buckets))
        for label in LABELS:
            s = evals.get(label, {})
            if any(f"{b}/ref_f1" in s for b in buckets):
                cells = [
                    f"{s[f'{b}/ref_f1']:5.1f} / {s[f'{b}/asr_f1']:5.1f}" if f"{b}/ref_f1" in s else f"{'-':>13}"
                    for b in buckets
                ]
                lines.append(f"{label:<14} " + " ".join(cells))
    return "\n".join(lines)


def _bucket_line(scores: Dict[str, float], names: Sequence[str]) -> str:
    parts = [
        f"{b} {scores[f'{b}/ref_f1']:.1f}/{scores[f'{b}/asr_f1']:.1f} (n={scores[f'{b}/clips']:.0f})"
        for b in names
        if f"{b}/ref_f1" in scores
    ]
    return ("; by held-out bucket REF/ASR: " + ", ".join(parts)) if parts else ""


def _samples(
    preds: Sequence[Dict[str, str]], rows: Sequence[Dict[str, Any]], clips: Dict[str, Clip]
) -> List[Dict[str, Any]]:
    """Caption, reference and per-clip scores, in clip-id order (``preds`` are sorted so)."""
    by_id = sorted(rows, key=lambda x: x["video_id"])
    return [
        {
            "video_id": p["video_id"],
            "caption": p["pred"],
            "reference": clips[p["video_id"]].gt_dialogues(),
            **{k: row[k] for k in ("asr_recall", "asr_precision", "ref_recall", "ref_precision")},
        }
        for p, row in zip(preds, by_id)
    ]
