"""The llm speaker judge served by a vLLM replica, used from the reward pool and from `eval`.

A random tiny model answers nonsense, so every clip whose speakers need judging must come back
as reward 0 with a JudgeError reason (counted, not dropped); clips whose speakers match exactly
never reach the model and score normally.
"""

import json

import pytest

from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import Rollout, Turn

SPEC = {
    "name": "llm",
    "speaker_judge": "llm",
    "judge_prompt": "Same person? {pairs}\nAnswer Yes or No per pair.",
    "components": [{"name": "ref_f1"}],
}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny_chat"), with_tokenizer=True, seed=5))


def test_reward_pool_with_vllm_served_judge(ray_local, text_model):
    from diadem_ray.cluster.llm_text import ActorTextGenerator
    from diadem_ray.cluster.reward_pool import RewardPool
    from diadem_ray.cluster.rollout_group import RolloutGroup

    judges = RolloutGroup(num_replicas=1, num_cpus_per_replica=0.5, model_path=text_model, max_model_len=512)
    pool = RewardPool(SPEC, num_workers=1, generate=ActorTextGenerator(judges.replicas[0], max_new_tokens=8))
    try:
        ref = (Turn("the man", "where were you last night"),)
        same = Rollout("a", 0, (), (1,), (-1.0,), 'the man: "where were you last night"', "stop", 0)
        other = Rollout("b", 0, (), (1,), (-1.0,), 'the tall guy: "where were you last night"', "stop", 0)
        out, stats = pool.score([(same, ref), (other, ref)], step=0)
        assert out[0].error is None and out[0].reward == 1.0
        assert out[1].reward == 0.0 and out[1].error.startswith("JudgeError: judge answered")
        assert stats.failed == {"JudgeError": 1}
    finally:
        pool.shutdown()
        judges.shutdown()


def test_eval_cli_llm_judge_with_local_model(text_model, tmp_path, capsys):
    from diadem_ray.cli import main

    ann = {
        "video_id": "v",
        "gt_dialogues": ["the man: where were you"],
        "speaker_num": 1,
        "people_num_in_screen": 1,
        "is_single_shot": 1,
        "has_off_screen_speaker": 0,
        "has_same_sex_speakers": 0,
        "only_opposite_sex_speakers": 0,
    }
    (tmp_path / "a.jsonl").write_text(json.dumps(ann) + "\n" + json.dumps(dict(ann, video_id="w")) + "\n")
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"video_id": "v", "pred_dialogues": ["a stranger: where were you"]})
        + "\n"
        + json.dumps({"video_id": "w", "pred_dialogues": ["the man: where were you"]})
        + "\n"
    )
    rc = main(
        [
            "eval",
            "--annotations",
            str(tmp_path / "a.jsonl"),
            "--predictions",
            str(tmp_path / "p.jsonl"),
            "--speaker-judge",
            "llm",
            "--judge-model",
            text_model,
            "--per-sample",
            str(tmp_path / "o.jsonl"),
        ]
    )
    rows = {r["video_id"]: r for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())}
    assert rc == 0
    assert rows["v"]["error"].startswith("JudgeError")  # skipped with its reason
    assert rows["w"]["ref_recall"] == 1.0
    assert "1 skipped" in capsys.readouterr().out
