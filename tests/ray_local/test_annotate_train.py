"""`diadem-ray annotate` as a Ray Data job over raw videos, then `diadem-ray train` (SFT, profile and
one GRPO stage) on what it wrote, with the speaker-permutation-invariant reward (cpWER): references named
SPEAKER_k train like any others."""

from __future__ import annotations

import json
from pathlib import Path

from diadem_ray.cli import main
from diadem_ray.data.shards import list_shards, read_shard


def test_annotated_videos_train_with_the_permutation_invariant_reward(
    ray_local, repo_root, tmp_path, capsys, tiny_train
):
    from diadem_ray.data.synth import synthesize
    from diadem_ray.models.tiny_lm import build_tiny_lm

    raw = tmp_path / "raw"
    synthesize(raw / "train", 4, seed=31, prefix="t", progress=False)
    synthesize(raw / "eval", 2, seed=32, prefix="e", progress=False)
    (raw / "train" / "videos" / "broken.mp4").write_bytes(b"not a video")
    data = tmp_path / "data"
    errs = ""
    for split in ("train", "eval"):
        rc = main(
            [
                "annotate",
                "--videos",
                str(raw / split / "videos"),
                "--out",
                str(data / split),
                "--config",
                str(repo_root / "configs/demo_cpu.yaml"),
                "annotate.faces=scene",
                "annotate.workers=1",
            ]
        )
        out, err = capsys.readouterr()
        assert rc == 0, out + err
        errs += err
    assert "broken.mp4: unreadable video" in errs or "broken.mp4: corrupt" in errs
    report = [json.loads(x) for x in (data / "train" / "report.jsonl").read_text().splitlines()]
    assert len(report) == 5 and sum(bool(r.get("skipped")) for r in report) == 1
    root = str(data / "train" / "shards")
    clips = [c for p in list_shards(root) for c in read_shard(p, root)]
    assert len(clips) == 4 and all(t.speaker.startswith("SPEAKER_") for c in clips for t in c.dialogue)
    annotations = [json.loads(x) for x in (data / "eval" / "annotations.jsonl").read_text().splitlines()]
    assert len(annotations) == 2 and all(a["gt_dialogues"] for a in annotations)

    lm = build_tiny_lm(tmp_path / "lm", with_tokenizer=True)
    rc = main(
        [
            "train",
            "--config",
            str(repo_root / "configs/demo_cpu.yaml"),
            "run.name=annotated",
            f"run.output_dir={tmp_path / 'runs'}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"data.root={data}",
            "data.decode_workers=1",
            *tiny_train(lm),
            "stages.grpo_stage1.reward=cpwer",
            "stages.profile.reward=cpwer",
            "stages.eval.reward=cpwer",
            "run.stages=[sft,profile,grpo_stage1,eval]",
        ]
    )
    printed, err = capsys.readouterr()
    assert rc == 0, printed + err
    assert "grpo_stage1 done; recorded in the latest checkpoint" in printed
    rows = (Path(tmp_path / "runs" / "annotated" / "results.txt")).read_text().splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["untrained", "sft", "grpo_stage1", "final"]
