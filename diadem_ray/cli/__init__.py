"""``diadem-ray`` command line. Heavy imports happen inside each command, so ``--help`` is fast.
Bad input gets a message naming the input and the fix, and exit status 1."""

from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence

from diadem_ray.cli.annotate import cmd_annotate
from diadem_ray.cli.checks import port_number, positive_int, unit_interval
from diadem_ray.cli.commands import (
    cmd_compare,
    cmd_config,
    cmd_demo,
    cmd_eval,
    cmd_ingest,
    cmd_profile,
    cmd_serve,
    cmd_synth,
    cmd_train,
)

COMMANDS: Dict[str, str] = {
    "demo": "run the embedded default end to end: synth -> SFT -> profile -> GRPO x2 -> eval",
    "train": "run the stages of a config (SFT, profile, two-stage GRPO, eval) on a Ray cluster",
    "synth": "synthesise audiovisual dialogue clips with exact ground truth",
    "ingest": "turn DiaDemBench or DVD-Bench annotations plus their videos into training shards",
    "annotate": "reference dialogues from raw video (Whisper, voices, shots, faces) as training shards",
    "profile": "roll out the SFT policy on training clips and bucket them by difficulty",
    "eval": "score predictions against DiaDemBench-style annotations (REF / ASR tables)",
    "compare": "compare MLflow runs: per run, or per configuration over seeds with intervals (table + PNG)",
    "serve": "serve the captioner and the reward scorer over HTTP with Ray Serve",
    "config": "show or check a resolved configuration",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diadem-ray",
        description="Train audiovisual captioners to describe dialogue faithfully (who said what, word for word) "
        "with SFT and difficulty-partitioned two-stage GRPO on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<8} {v}" for k, v in COMMANDS.items()),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for name in ("train", "demo"):
        p = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        if name == "train":
            p.add_argument(
                "--config", required=True, help="a YAML under configs/ (its sibling base.yaml is applied first)"
            )
        p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint and MLflow run")
        if name == "train":
            p.add_argument(
                "--from",
                dest="from_run",
                default=None,
                metavar="RUN",
                help="start as a new run (own folder, own MLflow run) from another run's latest checkpoint "
                "(runs/<name>): branches of an experiment share one SFT start",
            )
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. stages.sft.steps=10")
        p.set_defaults(func=cmd_train if name == "train" else cmd_demo)

    p = sub.add_parser("synth", help=COMMANDS["synth"], description=COMMANDS["synth"])
    p.add_argument("--out", required=True, help="output folder (videos/, shards/, annotations.jsonl)")
    p.add_argument("--clips", type=positive_int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same clips")
    p.add_argument("--prefix", default="syn", help="clip_id prefix")
    p.add_argument("--workers", type=positive_int, default=2, help="processes rendering in parallel")
    p.add_argument("--off-screen-rate", type=float, default=0.25, help="share of clips with an off-screen speaker")
    p.add_argument("--overlap-rate", type=float, default=0.06, help="chance that a turn overlaps the previous one")
    p.add_argument("--single-shot-rate", type=float, default=0.5, help="share of clips without cuts")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "ingest",
        help=COMMANDS["ingest"],
        description=COMMANDS["ingest"] + ". Rows that cannot be used "
        "are listed with their line and reason and skipped (exit status 1); the rest are written.",
    )
    p.add_argument("--annotations", required=True, help="JSONL (or a JSON array) of DiaDemBench or DVD-Bench rows")
    p.add_argument("--videos", required=True, help="folder or URI (s3://…) the rows' video names are relative to")
    p.add_argument("--format", required=True, choices=("diadembench", "dvdbench"), help="annotation format")
    p.add_argument("--out", required=True, help="output folder: shards/ (hive-partitioned) and annotations.jsonl")
    p.add_argument("--language", default="en", help="language of rows that do not name one (default: en)")
    p.add_argument(
        "--bucket", default="unassigned", help="bucket the clips go to before profiling (default: unassigned)"
    )
    p.add_argument("--clips-per-shard", type=positive_int, default=64, help="parquet rows per shard file (>= 1)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "annotate",
        help=COMMANDS["annotate"],
        description=COMMANDS["annotate"] + ". A Ray Data job over the videos; "
        "writes shards/, annotations.jsonl (speakers as SPEAKER_k), videos/ (dialogues cut out of longer videos) "
        "and report.jsonl (per video: dialogues with confidence, or why it was skipped). Settings: the annotate.* "
        "section of the config (docs/annotate.md).",
    )
    p.add_argument("--videos", required=True, help="folder or URI (s3://…) holding the videos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (every worker node must see it)")
    p.add_argument(
        "--config", default=None, help="YAML with annotate.* and cluster.* settings (default: configs/base.yaml)"
    )
    p.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. annotate.faces=scene annotate.min_confidence=0.5"
    )
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("compare", help=COMMANDS["compare"], description=COMMANDS["compare"])
    p.add_argument("--experiment", required=True, help="MLflow experiment name (tracking.experiment of the runs)")
    p.add_argument(
        "--tracking-uri", default="sqlite:///runs/mlflow.db", help="MLflow tracking URI (default: the demo's)"
    )
    p.add_argument("--png", default=None, help="where to write the curves (default: runs/compare_<experiment>.png)")
    p.add_argument(
        "--group-by",
        nargs="*",
        default=None,
        metavar="KEY",
        help="aggregate over seeds per configuration: config params (e.g. grpo.kl_coef) or reward_hash; "
        "with no KEY, the reward hash and every param that differs between the runs",
    )
    p.add_argument("--baseline", default=None, help="the group the others are compared with (its label, or part of it)")
    p.add_argument(
        "--seeds", nargs="+", type=int, default=None, metavar="N", help="only the runs of these run.seed values"
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "profile",
        help=COMMANDS["profile"],
        description=COMMANDS["profile"] + ": sampled rollouts of an "
        "exported policy on every training clip, scored with stages.profile.reward; writes hive-partitioned "
        "shards, profile.jsonl (per-clip pass rate, mean reward, variance, zero-variance mark) and a summary table.",
    )
    p.add_argument("--config", required=True, help="the training YAML (data, rollout and stages.profile settings)")
    p.add_argument(
        "--checkpoint", required=True, help="a run directory (runs/<name>) or its policy/ folder (the SFT policy)"
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<run.name>/profiled)")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. stages.profile.samples_per_prompt=4")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("eval", help=COMMANDS["eval"], description=COMMANDS["eval"])
    p.add_argument(
        "--annotations", required=True, help="DiaDemBench annotation JSONL (video_id, gt_dialogues, attributes)"
    )
    p.add_argument(
        "--predictions", required=True, help="JSONL with video_id and pred (caption) or pred_dialogues (lines)"
    )
    p.add_argument(
        "--extractor",
        default="structured",
        choices=("structured", "prose", "llm"),
        help="how captions become dialogue lines (default: structured)",
    )
    p.add_argument(
        "--speaker-judge",
        default="exact",
        choices=("exact", "embedding", "llm", "mllm"),
        help="who-is-the-same-person judge for REF (default: exact)",
    )
    p.add_argument(
        "--judge-threshold", type=unit_interval, default=0.7, help="cosine threshold of the embedding judge, in (0, 1]"
    )
    p.add_argument("--judge-model", default=None, help="local text-model dir for the llm extractor / judge")
    p.add_argument("--per-sample", default=None, metavar="OUT.jsonl", help="write one JSON line of details per clip")
    p.add_argument(
        "--max-caption-chars", type=positive_int, default=200_000, help="longer captions are skipped with a reason"
    )
    p.add_argument(
        "--max-lines", type=positive_int, default=2_000, help="dialogues with more lines are skipped with a reason"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "serve",
        help=COMMANDS["serve"],
        description=COMMANDS["serve"] + ". POST /caption (with "
        "--checkpoint), POST /score, GET /healthz, OpenAPI at /docs.",
    )
    p.add_argument(
        "--config", default=None, help="YAML whose serve.* section sets limits, batching, engine and URI roots"
    )
    p.add_argument(
        "--checkpoint", default=None, help="a run directory (runs/<name>) or its policy/ folder: serves POST /caption"
    )
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=None, help="HTTP port (default: serve.port, 8000)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a private local one)")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. serve.allowed_uri_roots=[/data/clips]")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help=COMMANDS["config"], description=COMMANDS["config"])
    p.add_argument(
        "action", choices=("show", "check"), help="show: print the resolved YAML; check: report every problem"
    )
    p.add_argument("config", help="a YAML under configs/ (its sibling base.yaml is applied first)")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. learner.zero_stage=3")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
