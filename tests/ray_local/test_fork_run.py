"""`train --from`: a GRPO branch starts from another run's SFT checkpoint and profile exactly
(the ablation arms of configs/ablations/ share one SFT start this way), logs to an MLflow run of
its own that holds the inherited evaluation, and leaves the source run as it was."""

from __future__ import annotations

import json

from diadem_ray.cli import main


def test_a_grpo_branch_starts_from_the_sft_run(ray_local, repo_root, tmp_path, capsys, tiny_train):
    import mlflow

    from diadem_ray.models.tiny_lm import build_tiny_lm

    lm = build_tiny_lm(tmp_path / "lm", with_tokenizer=True)
    db = tmp_path / "mlflow.db"
    common = [
        "--config",
        str(repo_root / "configs/demo_cpu.yaml"),
        f"run.output_dir={tmp_path / 'runs'}",
        f"tracking.tracking_uri=sqlite:///{db}",
        *tiny_train(lm),
        f"data.root={tmp_path / 'data'}",
        "data.train_clips=3",
        "data.eval_clips=2",
        "data.decode_workers=1",
        "stages.profile.held_out=true",  # the held-out clips bucketed too: evaluations per bucket
    ]
    rc = main(["train", *common, "run.name=base", "run.group=sft_only", "run.stages=[sft,profile,eval]"])
    assert rc == 0, capsys.readouterr()
    base = tmp_path / "runs" / "base"
    before = (base / "results.txt").read_text()
    sft_eval = json.loads(
        (base / "checkpoints" / (base / "checkpoints" / "latest").read_text() / "meta.json").read_text()
    )
    capsys.readouterr()
    rc = main(
        [
            "train",
            "--from",
            str(base),
            *common,
            "run.name=branch",
            "run.group=one_stage",
            "run.stages=[sft,profile,grpo_stage1,eval]",
        ]
    )
    printed, err = capsys.readouterr()
    assert rc == 0, printed + err
    assert f"forked {base}" in printed
    assert "stages done: sft, profile; next: grpo_stage1 step 1" in printed
    assert "eval sft" not in printed and "sft step" not in printed  # nothing of the SFT start is redone
    table, by_bucket = (tmp_path / "runs/branch/results.txt").read_text().split("\n\n")
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert list(rows) == ["untrained", "sft", "grpo_stage1", "final"]
    sft_base = {line.split()[0]: line.split()[1:] for line in before.split("\n\n")[0].splitlines()[1:]}["sft"]
    assert rows["sft"] == sft_base
    # the held-out buckets profiled in the base run are the branch's too
    assert by_bucket.startswith("by held-out bucket") and "grpo_stage1" in by_bucket
    assert "held-out clips profiled the same way" not in printed
    assert (base / "results.txt").read_text() == before  # the source is untouched
    assert sft_eval["driver"]["mlflow_run_id"]
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = {
        r.data.tags["mlflow.runName"]: r
        for r in mlflow.search_runs(experiment_names=["diadem-ray"], output_format="list")
    }
    assert set(runs) == {"base", "branch"} and runs["branch"].info.run_id != runs["base"].info.run_id
    assert runs["branch"].data.tags["forked_from"] == str(base)
    assert runs["branch"].data.params["run.group"] == "one_stage"
    metrics = runs["branch"].data.metrics
    assert {"eval/sft/ref_f1", "eval/grpo_stage1/ref_f1", "eval/ref_f1"} <= set(metrics)
    assert any(k.startswith("eval/grpo_stage1/") and k.endswith("/ref_f1") and k.count("/") == 3 for k in metrics)
    # which clips each GRPO step drew: one line per sampling round (tiny_train: 1 step x 2 clips)
    logged = [json.loads(x) for x in (tmp_path / "runs/branch/grpo_clips.jsonl").read_text().splitlines()]
    first = [x for x in logged if x["round"] == 0]
    assert [(x["stage"], x["step"]) for x in first] == [("grpo_stage1", 0)] and len(first[0]["clip_ids"]) == 2
    train_ids = {json.loads(x)["clip_id"] for x in (base / "profiled" / "profile.jsonl").read_text().splitlines()}
    assert {c for x in logged for c in x["clip_ids"]} <= train_ids
