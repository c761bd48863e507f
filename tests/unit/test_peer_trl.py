"""The TRL comparison's arithmetic (bench/peer_trl.py, bench/peer_trl_worker.py): the first step of
every run is dropped, medians are over the remaining steps of all runs, the ratio is against
``ours``, and the worker's clock charges nested calls to their own keys."""

from __future__ import annotations

import peer_trl
import peer_trl_worker
import pytest


def _step(step_s: float, reward: float = 0.5) -> dict:
    return {
        "step_s": step_s,
        "generation_s": step_s / 4,
        "reward_s": 0.1,
        "learner_s": step_s / 2,
        "sync_s": 0.0,
        "other_s": 0.0,
        "reward_mean": reward,
    }


def test_report_drops_each_runs_first_step_and_compares_medians_with_ours():
    results = {
        # warm-up steps of 100 s must not count; kept steps 10, 12 | 14, 16 -> median 13
        "ours": [[_step(100, 0.1), _step(10, 0.2), _step(12, 0.3)], [_step(90, 0.3), _step(14, 0.4), _step(16, 0.5)]],
        # kept 26, 30 | 22, 28 -> median 27
        "trl": [[_step(5), _step(26), _step(30)], [_step(5), _step(22), _step(28)]],
    }
    text = peer_trl.report(results)
    rows = {
        line.split("|")[1].strip(): line
        for line in text.splitlines()
        if line.startswith("| ours") or line.startswith("| trl")
    }
    assert "| 13.0 | 3.2 | 0.1 | 6.5 | 0.0 |" in rows["ours"] and rows["ours"].endswith("| 1.00× |")
    assert "| 27.0 |" in rows["trl"] and rows["trl"].endswith(f"| {27 / 13:.2f}× |")
    assert "ours 0.200 0.300 0.400" in text  # mean reward per step over the two runs


def test_worker_clock_charges_each_wrapped_call_and_resets_per_step():
    class Engine:
        def generate(self, n):
            return n * 2

    eng = Engine()
    clock = peer_trl_worker.Clock()
    clock.wrap(eng, "generate", "generation_s")
    assert eng.generate(3) == 6 and eng.generate(4) == 8
    first = clock.take()
    assert set(first) == {"generation_s"} and first["generation_s"] >= 0.0
    assert clock.take() == {}


def test_trl_gets_the_prompts_step_by_step_in_the_order_the_run_drew_them(tmp_path):
    import json

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"clip_id": c, "prompt": f"p{c}"}) + "\n" for c in "abcd"))
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        {"stage": "grpo_stage1", "step": 0, "round": 0, "clip_ids": ["c", "a"]},
        {"stage": "grpo_stage1", "step": 0, "round": 1, "clip_ids": ["d", "d"]},  # a refill round: not TRL's
        {"stage": "grpo_stage1", "step": 1, "round": 0, "clip_ids": ["b", "b"]},
        {"stage": "grpo_stage1", "step": 1, "round": 0, "clip_ids": ["b", "c"]},  # replayed after a resume
    ]
    (run / "grpo_clips.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "ordered.jsonl"
    assert peer_trl.ordered_prompts(prompts, run, out) == 2
    assert [json.loads(x)["clip_id"] for x in out.read_text().splitlines()] == ["c", "a", "b", "c"]
    (run / "grpo_clips.jsonl").write_text(json.dumps({"step": 0, "round": 0, "clip_ids": ["z"]}) + "\n")
    with pytest.raises(SystemExit, match="z"):
        peer_trl.ordered_prompts(prompts, run, out)
