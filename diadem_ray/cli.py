"""``diadem-ray`` command line. Heavy imports happen inside each command, so ``--help`` is fast.

Commands whose implementation has not landed yet say so and exit 2; none is faked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

NOT_READY_EXIT = 2

COMMANDS: Dict[str, str] = {
    "demo": "run the embedded default end to end: synth -> SFT -> profile -> GRPO x2 -> eval",
    "train": "run the stages of a config (SFT, profile, two-stage GRPO, eval) on a Ray cluster",
    "synth": "synthesise audiovisual dialogue clips with exact ground truth",
    "profile": "roll out the SFT policy on training clips and bucket them by difficulty",
    "eval": "score predictions against DiaDemBench-style annotations (REF / ASR tables)",
    "compare": "compare MLflow runs grouped by reward-config hash (table + PNG)",
    "serve": "serve the captioner and the reward scorer over HTTP with Ray Serve",
    "config": "show or check a resolved configuration",
}

#: commands not implemented yet -> the issue that delivers them
PENDING: Dict[str, str] = {
    "profile": "#6 (the data plane; today profiling runs as the `profile` stage of `train`)",
}


def _pending(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(f"diadem-ray {name}: not implemented yet; it is delivered by issue {PENDING[name]}.", file=sys.stderr)
        return NOT_READY_EXIT

    return run


def _cmd_config(args: argparse.Namespace) -> int:
    from diadem_ray.config import ConfigError, load_config, load_reward_spec, to_yaml
    from diadem_ray.rewards.compose import check_spec

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Reward compositions the stages name are part of the config: check them too.
    reward_dir = Path(args.config).parent / "rewards"
    problems: List[str] = []
    names = {cfg.stages.profile.reward, cfg.stages.grpo_stage1.reward, cfg.stages.grpo_stage2.reward, cfg.stages.eval.reward}
    for name in sorted(names):
        try:
            problems += check_spec(load_reward_spec(name, [reward_dir]))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        print(f"error: {args.config}: {len(problems)} problem(s) in reward compositions", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    if args.action == "show":
        print(to_yaml(cfg), end="")
    else:
        print(f"{args.config}: OK")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import logging

    from diadem_ray.config import ConfigError, load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from diadem_ray.driver import Driver

    ckpt = Path(cfg.run.output_dir) / cfg.run.name / "checkpoints" / "latest"
    if args.resume and not ckpt.is_file():
        print(f"error: --resume: no checkpoint at {ckpt}; run without --resume to start", file=sys.stderr)
        return 1
    if not args.resume and ckpt.is_file():
        print(f"error: {ckpt.parent} already holds a run's checkpoints; pass --resume to continue it, or choose "
              f"another run.name / run.output_dir", file=sys.stderr)
        return 1
    Driver(cfg, config_dir=str(Path(args.config).parent), resume=args.resume).run()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    here = Path(__file__).resolve().parent.parent / "configs" / "demo_cpu.yaml"
    config = Path("configs/demo_cpu.yaml") if Path("configs/demo_cpu.yaml").is_file() else here
    if not config.is_file():
        print("error: configs/demo_cpu.yaml not found; run from the repository root", file=sys.stderr)
        return 1
    args.config = str(config)
    return _cmd_train(args)


def _cmd_synth(args: argparse.Namespace) -> int:
    from diadem_ray.data.synth import SynthRates, describe, synthesize

    if args.clips < 1:
        print(f"error: --clips must be >= 1, got {args.clips}", file=sys.stderr)
        return 1
    rates = SynthRates(off_screen=args.off_screen_rate, overlap=args.overlap_rate, single_shot=args.single_shot_rate)
    for name, v in (("--off-screen-rate", rates.off_screen), ("--overlap-rate", rates.overlap), ("--single-shot-rate", rates.single_shot)):
        if not 0.0 <= v <= 1.0:
            print(f"error: {name} must be in [0, 1], got {v}", file=sys.stderr)
            return 1
    clips = synthesize(args.out, args.clips, seed=args.seed, prefix=args.prefix, workers=args.workers, rates=rates)
    print(describe(clips))
    print(f"videos: {Path(args.out) / 'videos'}\nshards: {Path(args.out) / 'shards'}\n"
          f"annotations (for diadem-ray eval): {Path(args.out) / 'annotations.jsonl'}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from diadem_ray.compare import collect, plot, table

    try:
        runs = collect(args.tracking_uri, args.experiment)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not runs:
        print(f"error: experiment {args.experiment!r} has no runs yet", file=sys.stderr)
        return 1
    print(table(runs))
    png = plot(runs, args.png or f"runs/compare_{args.experiment}.png", f"{args.experiment}: runs by reward-config hash")
    print(f"\ncurves: {png}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from diadem_ray.rewards.benchmark import evaluate, format_report, load_annotations, load_predictions
    from diadem_ray.rewards.extract import make_extractor
    from diadem_ray.rewards.speakers import make_judge

    for label, path in (("--annotations", args.annotations), ("--predictions", args.predictions)):
        if not Path(path).is_file():
            print(f"error: {label} {path}: no such file", file=sys.stderr)
            return 1
    generate = None
    if args.extractor == "llm" or args.speaker_judge in ("llm", "mllm"):
        if not args.judge_model:
            print("error: --extractor llm and --speaker-judge llm/mllm need a local model: pass --judge-model DIR", file=sys.stderr)
            return 1
        from diadem_ray.models.text_llm import local_generate

        generate = local_generate(args.judge_model)
    try:
        extract = make_extractor(args.extractor, generate=generate)
        judge = make_judge(args.speaker_judge, threshold=args.judge_threshold, generate=generate)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems: List[str] = []
    ann = load_annotations(args.annotations, problems)
    preds = load_predictions(args.predictions, problems)
    res = evaluate(ann, preds, extract=extract, judge=judge, max_caption_chars=args.max_caption_chars,
                   max_lines=args.max_lines, input_problems=problems)
    print(format_report(res))
    if args.per_sample:
        out = Path(args.per_sample)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for row in res.rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"\nper-sample results: {out} ({len(res.rows)} lines)")
    return 1 if res.input_problems else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from diadem_ray.config import ConfigError, load_config

    if args.checkpoint:
        from diadem_ray.serve import CAPTION_PENDING

        print(f"diadem-ray serve: {CAPTION_PENDING}; run without --checkpoint to serve POST /score.", file=sys.stderr)
        return NOT_READY_EXIT
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    import time

    import ray

    from diadem_ray.serve import deploy

    host = args.host or cfg.serve.host
    port = args.port or cfg.serve.port
    ray.init(address=args.ray_address or "local", include_dashboard=False, log_to_driver=False)
    try:
        deploy(host=host, port=port, max_caption_chars=cfg.serve.max_caption_chars,
               max_dialogue_lines=cfg.serve.max_dialogue_lines)
        print(f"serving on http://{host}:{port}  (POST /score, GET /healthz, docs at /docs); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


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
            p.add_argument("--config", required=True, help="a YAML under configs/ (its sibling base.yaml is applied first)")
        p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint and MLflow run")
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. stages.sft.steps=10")
        p.set_defaults(func=_cmd_train if name == "train" else _cmd_demo)

    p = sub.add_parser("synth", help=COMMANDS["synth"], description=COMMANDS["synth"])
    p.add_argument("--out", required=True, help="output folder (videos/, shards/, annotations.jsonl)")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same clips")
    p.add_argument("--prefix", default="syn", help="clip_id prefix")
    p.add_argument("--workers", type=int, default=2, help="processes rendering in parallel")
    p.add_argument("--off-screen-rate", type=float, default=0.25, help="share of clips with an off-screen speaker")
    p.add_argument("--overlap-rate", type=float, default=0.06, help="chance that a turn overlaps the previous one")
    p.add_argument("--single-shot-rate", type=float, default=0.5, help="share of clips without cuts")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("compare", help=COMMANDS["compare"], description=COMMANDS["compare"])
    p.add_argument("--experiment", required=True, help="MLflow experiment name (tracking.experiment of the runs)")
    p.add_argument("--tracking-uri", default="sqlite:///runs/mlflow.db", help="MLflow tracking URI (default: the demo's)")
    p.add_argument("--png", default=None, help="where to write the curves (default: runs/compare_<experiment>.png)")
    p.set_defaults(func=_cmd_compare)

    for name in ("profile",):
        p = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name] + f" (pending: issue {PENDING[name]})")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_pending(name))

    p = sub.add_parser("eval", help=COMMANDS["eval"], description=COMMANDS["eval"])
    p.add_argument("--annotations", required=True, help="DiaDemBench annotation JSONL (video_id, gt_dialogues, attributes)")
    p.add_argument("--predictions", required=True, help="JSONL with video_id and pred (caption) or pred_dialogues (lines)")
    p.add_argument("--extractor", default="structured", choices=("structured", "prose", "llm"),
                   help="how captions become dialogue lines (default: structured)")
    p.add_argument("--speaker-judge", default="exact", choices=("exact", "embedding", "llm", "mllm"),
                   help="who-is-the-same-person judge for REF (default: exact)")
    p.add_argument("--judge-threshold", type=float, default=0.7, help="cosine threshold of the embedding judge")
    p.add_argument("--judge-model", default=None, help="local text-model dir for the llm extractor / judge")
    p.add_argument("--per-sample", default=None, metavar="OUT.jsonl", help="write one JSON line of details per clip")
    p.add_argument("--max-caption-chars", type=int, default=200_000, help="longer captions are skipped with a reason")
    p.add_argument("--max-lines", type=int, default=2_000, help="dialogues with more lines are skipped with a reason")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("serve", help=COMMANDS["serve"], description=COMMANDS["serve"] + ". POST /score, GET /healthz, "
                       "OpenAPI at /docs; POST /caption needs --checkpoint and the policy models (issue #7), not served yet.")
    p.add_argument("--config", default=None, help="YAML whose serve.* section sets host, port and input limits")
    p.add_argument("--checkpoint", default=None, help="trained captioner checkpoint for POST /caption (not available yet)")
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: serve.port, 8000)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a private local one)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("config", help=COMMANDS["config"], description=COMMANDS["config"])
    p.add_argument("action", choices=("show", "check"), help="show: print the resolved YAML; check: report every problem")
    p.add_argument("config", help="a YAML under configs/ (its sibling base.yaml is applied first)")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. learner.zero_stage=3")
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
