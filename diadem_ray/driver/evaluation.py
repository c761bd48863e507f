"""Held-out evaluation, the exported policy after each trained stage, and the final report.
A part of :class:`diadem_ray.driver.Driver`."""

from __future__ import annotations

import json
import time
from typing import Dict

from diadem_ray.driver.state import say as _say


class Evaluation:
    """Evaluation, policy export and report (mixed into ``Driver``)."""

    def _export_policy(self, stage: str) -> None:
        """``runs/<name>/policy``: the weights after ``stage`` as a servable directory (replaced
        atomically after each trained stage; ``diadem-ray serve --checkpoint runs/<name>``)."""
        t0 = time.perf_counter()
        d = self.cfg.data
        version = self.family.policy_input_version()
        path = self.learners.save_policy(str(self.out / "policy"), {
            "family": self.cfg.model.family, "policy_version": self.rollouts.version, "stage": stage,
            "learner_step": self.learners.step, "run": self.cfg.run.name, "frontend_version": version,
            "frames_per_clip": d.frames_per_clip, "sample_rate_hz": d.audio_sample_rate_hz,
            "max_prompt_tokens": self.cfg.model.max_prompt_tokens, "max_new_tokens": self.cfg.stages.eval.max_new_tokens})
        _say(f"policy after {stage} exported to {path} ({time.perf_counter() - t0:.1f} s)")

    def _evaluate(self, label: str) -> Dict[str, float]:
        from diadem_ray.rewards.benchmark import evaluate, format_report

        if label in self.state.evals:
            return self.state.evals[label]
        same = [k for k, v in self.state.evals.items() if v.get("policy_version") == self.rollouts.version]
        if same:  # e.g. the eval stage right after grpo_stage2: the same weights, the same greedy captions
            self.state.evals[label] = dict(self.state.evals[same[0]])
            _say(f"eval {label}: same policy_version as {same[0]!r}; scores reused")
            return self.state.evals[label]
        e = self.cfg.stages.eval
        t0 = time.perf_counter()
        rollouts = self._generate([self.clips[i] for i in self.eval_ids], "eval", samples_per_prompt=1, max_new_tokens=e.max_new_tokens, temperature=0.0)
        preds = [{"video_id": c.clip_id, "pred": ro.text} for c, ro in rollouts]
        res = evaluate(self.annotations, preds)
        scores = {"ref_f1": 100 * res.overall.ref_f1, "asr_f1": 100 * res.overall.asr_f1, "clips": float(res.overall.clips),
                  "policy_version": self.rollouts.version}
        self.state.evals[label] = scores
        self.tracker.log_metrics({f"eval/{label}/ref_f1": scores["ref_f1"], f"eval/{label}/asr_f1": scores["asr_f1"],
                                  "eval/ref_f1": scores["ref_f1"], "eval/asr_f1": scores["asr_f1"],
                                  f"eval/{label}/seconds": time.perf_counter() - t0}, step=self.state.global_step)
        self.tracker.log_text(format_report(res), f"eval/{label}/breakdown.txt")
        # Every greedy caption, in `diadem-ray eval --predictions` form: rescore them with another
        # extractor or speaker judge without regenerating (annotations: data.root/eval/annotations.jsonl).
        pred_file = self.out / "eval" / label / "predictions.jsonl"
        pred_file.parent.mkdir(parents=True, exist_ok=True)
        pred_file.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in sorted(preds, key=lambda x: x["video_id"])),
                             encoding="utf-8")
        self.tracker.log_artifact(pred_file, f"eval/{label}")
        samples = [{"video_id": p["video_id"], "caption": p["pred"], "reference": self.clips[p["video_id"]].gt_dialogues(),
                    **{k: row[k] for k in ("asr_recall", "asr_precision", "ref_recall", "ref_precision")}}
                   for p, row in zip(sorted(preds, key=lambda x: x["video_id"]), sorted(res.rows, key=lambda x: x["video_id"]))][: e.sample_captions]
        self.tracker.log_text("\n".join(json.dumps(s) for s in samples), f"eval/{label}/sample_captions.jsonl")
        _say(f"eval {label}: REF F1 {scores['ref_f1']:.1f}  ASR F1 {scores['asr_f1']:.1f}  ({res.overall.clips} held-out clips, "
             f"{time.perf_counter() - t0:.0f} s)")
        return scores

    def _report(self) -> None:
        lines = [f"{'policy':<14} {'REF F1':>7} {'ASR F1':>7}"]
        for label in ("untrained", "sft", "grpo_stage1", "grpo_stage2", "final"):
            if label in self.state.evals:
                s = self.state.evals[label]
                lines.append(f"{label:<14} {s['ref_f1']:7.1f} {s['asr_f1']:7.1f}")
        text = "\n".join(lines)
        (self.out / "results.txt").write_text(text + "\n")
        self.tracker.log_artifact(self.out / "results.txt")
        _say(f"held-out clips ({len(self.eval_ids)}), DiaDemBench-style F1 x100:\n{text}")
        _say(f"MLflow: mlflow ui --backend-store-uri {self.cfg.tracking.tracking_uri}   (run {self.tracker.run_id})")
