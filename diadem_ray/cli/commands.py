"""The ``diadem-ray`` commands, one function each (``args`` from :func:`diadem_ray.cli.build_parser`;
exit status 0, or 1 with a message naming the input and the fix). Heavy imports happen inside each
command, so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

from diadem_ray.cli.checks import loaded_config, not_regular_file, not_writable_file


def cmd_config(args: argparse.Namespace) -> int:
    from diadem_ray.config import ConfigError, line_credit_problems, load_reward_spec, local_cpu_problems, to_yaml
    from diadem_ray.rewards.compose import check_spec

    cfg = loaded_config(args.config, args.overrides)
    if cfg is None:
        return 1
    # What a training run under it would start, and the reward compositions the stages name: check them too.
    reward_dir = Path(args.config).parent / "rewards"
    problems: List[str] = local_cpu_problems(cfg)
    names = {
        cfg.stages.profile.reward,
        cfg.stages.grpo_stage1.reward,
        cfg.stages.grpo_stage2.reward,
        cfg.stages.eval.reward,
    }
    grpo_rewards = {cfg.stages.grpo_stage1.reward, cfg.stages.grpo_stage2.reward}
    for name in sorted(names):
        try:
            spec = load_reward_spec(name, [reward_dir])
            problems += check_spec(spec)
            if name in grpo_rewards:
                problems += line_credit_problems(cfg.grpo.line_credit_weight, spec)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        print(f"error: {args.config}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    if args.action == "show":
        print(to_yaml(cfg), end="")
    else:
        print(f"{args.config}: OK")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = loaded_config(args.config, args.overrides)
    if cfg is None:
        return 1
    from diadem_ray.config import local_cpu_problems
    from diadem_ray.driver import Driver

    too_big = local_cpu_problems(cfg)
    for problem in too_big:
        print(f"error: {args.config}: {problem}", file=sys.stderr)
    if too_big:
        return 1

    ckpt = Path(cfg.run.output_dir) / cfg.run.name / "checkpoints" / "latest"
    source = getattr(args, "from_run", None)
    if source:
        return _train_forked(args, cfg, Path(source), ckpt.parent.parent)
    if args.resume and not ckpt.is_file():
        print(f"error: --resume: no checkpoint at {ckpt}; run without --resume to start", file=sys.stderr)
        return 1
    if args.resume:
        from diadem_ray.driver.state import checkpoint_state, reconcile_with

        try:  # a config this checkpoint cannot continue under is refused before Ray starts
            reconcile_with(checkpoint_state(ckpt.parent), cfg)
        except ValueError as exc:
            print(f"error: --resume: {exc}", file=sys.stderr)
            return 1
    if not args.resume and ckpt.is_file():
        print(
            f"error: {ckpt.parent} already holds a run's checkpoints; pass --resume to continue it, or choose "
            f"another run.name / run.output_dir",
            file=sys.stderr,
        )
        return 1
    Driver(cfg, config_dir=str(Path(args.config).parent), resume=args.resume).run()
    return 0


def _train_forked(args: argparse.Namespace, cfg, source: Path, out: Path) -> int:
    """``train --from RUN``: fork RUN's latest checkpoint into this run's folder, then resume it."""
    from diadem_ray.driver import Driver
    from diadem_ray.driver.fork import fork_problems, fork_run
    from diadem_ray.driver.state import checkpoint_state, reconcile_with

    if args.resume:
        print("error: --from starts a new run from another one; --resume continues this run: give one", file=sys.stderr)
        return 1
    problems = fork_problems(source, out)
    if not problems:
        try:  # a config the source's checkpoint cannot continue under is refused before anything is written
            reconcile_with(checkpoint_state(source / "checkpoints"), cfg)
        except ValueError as exc:
            problems.append(f"--from {source}: {exc}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    fork_run(source, out)
    print(f"forked {source} (its latest checkpoint, profile, policy and evaluations) into {out}")
    Driver(cfg, config_dir=str(Path(args.config).parent), resume=True, forked_from=str(source)).run()
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import logging

    from diadem_ray.config import ConfigError, load_config
    from diadem_ray.models.policy import PolicyError, read_policy

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        policy_dir, meta = read_policy(args.checkpoint)
    except (ConfigError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if meta.family != cfg.model.family:
        print(
            f"error: {policy_dir} is a {meta.family} policy but the config's model.family is {cfg.model.family}; "
            "pass the "
            f"config the run used (runs/{meta.run}/config.yaml)",
            file=sys.stderr,
        )
        return 1
    out = args.out or str(Path(cfg.run.output_dir) / cfg.run.name / "profiled")
    if Path(out).resolve() == (Path(cfg.data.root) / "train" / "shards").resolve():
        print(
            f"error: --out {out} is the training data's own shard folder; profile into another folder", file=sys.stderr
        )
        return 1
    from diadem_ray.driver import Driver

    Driver(cfg, config_dir=str(Path(args.config).parent)).profile_only(str(policy_dir), out)
    if args.out is None:
        print(
            f"`diadem-ray train --config {args.config} --resume` with run.stages without 'profile' trains its GRPO "
            f"stages on these buckets",
            flush=True,
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    here = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"
    config = Path("configs/demo_cpu.yaml") if Path("configs/demo_cpu.yaml").is_file() else here
    if not config.is_file():
        print("error: configs/demo_cpu.yaml not found; run from the repository root", file=sys.stderr)
        return 1
    args.config = str(config)
    return cmd_train(args)


def cmd_synth(args: argparse.Namespace) -> int:
    from diadem_ray.data.synth import SynthRates, describe, synthesize

    rates = SynthRates(off_screen=args.off_screen_rate, overlap=args.overlap_rate, single_shot=args.single_shot_rate)
    for name, v in (
        ("--off-screen-rate", rates.off_screen),
        ("--overlap-rate", rates.overlap),
        ("--single-shot-rate", rates.single_shot),
    ):
        if not 0.0 <= v <= 1.0:
            print(f"error: {name} must be in [0, 1], got {v}", file=sys.stderr)
            return 1
    clips = synthesize(args.out, args.clips, seed=args.seed, prefix=args.prefix, workers=args.workers, rates=rates)
    print(describe(clips))
    print(
        f"videos: {Path(args.out) / 'videos'}\nshards: {Path(args.out) / 'shards'}\n"
        f"annotations (for diadem-ray eval): {Path(args.out) / 'annotations.jsonl'}"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from diadem_ray.data.ingest import ingest
    from diadem_ray.data.schema import BUCKET_NAME, annotation_of
    from diadem_ray.data.shards import write_shards

    problem = not_regular_file("--annotations", args.annotations)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out}: exists and is not a folder; give a new or existing folder", file=sys.stderr)
        return 1
    if "://" not in args.videos and not Path(args.videos).is_dir():
        print(
            f"error: --videos {args.videos}: not a folder (give the folder the annotations' video names are relative "
            "to)",
            file=sys.stderr,
        )
        return 1
    if not BUCKET_NAME.match(args.bucket):
        print(
            f"error: --bucket {args.bucket!r}: letters, digits, '_' and '-' only (it names a folder)", file=sys.stderr
        )
        return 1
    try:
        rep = ingest(args.annotations, args.videos, fmt=args.format, language=args.language)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in rep.problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not rep.clips:
        print(
            f"error: no usable rows in {args.annotations} ({len(rep.problems)} skipped); nothing written",
            file=sys.stderr,
        )
        return 1
    out = Path(args.out)
    clips = [replace(c, bucket=args.bucket) for c in rep.clips]
    shards = write_shards(clips, str(out / "shards"), clips_per_shard=args.clips_per_shard, replace=True)
    with (out / "annotations.jsonl").open("w", encoding="utf-8") as fh:
        for c in clips:
            fh.write(json.dumps(annotation_of(c), ensure_ascii=False) + "\n")
    hours = sum(c.duration_s for c in clips) / 3600
    print(
        f"{len(clips)} clips ({hours:.2f} h of video, {sum(len(c.dialogue) for c in clips)} utterances) -> "
        f"{len(shards)} shard(s) in {out / 'shards'}; annotations (for diadem-ray eval): {out / 'annotations.jsonl'}"
    )
    if rep.problems:
        print(f"{len(rep.problems)} row(s) skipped (listed above)", file=sys.stderr)
    return 1 if rep.problems else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from diadem_ray.compare import collect, default_keys, group_table, plot, plot_groups, table

    if args.png:
        problem = not_writable_file("--png", args.png)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1

    try:
        runs = collect(args.tracking_uri, args.experiment)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.seeds is not None:
        runs = [r for r in runs if r.seed in args.seeds]
    if not runs:
        seeds = f" with run.seed in {args.seeds}" if args.seeds is not None else ""
        print(f"error: experiment {args.experiment!r} has no runs{seeds} yet", file=sys.stderr)
        return 1
    print(table(runs))
    png_path = args.png or f"runs/compare_{args.experiment}.png"
    if args.group_by is None:
        if args.baseline:
            print("error: --baseline needs --group-by (the keys that make a configuration)", file=sys.stderr)
            return 1
        png = plot(runs, png_path, f"{args.experiment}: runs by reward-config hash")
    else:
        unfinished = [r.name for r in runs if r.status != "FINISHED"]
        if unfinished:  # a running, failed or killed run's last scores are not its final ones
            print(f"\nleft out of the groups (not FINISHED): {', '.join(unfinished)}")
            runs = [r for r in runs if r.status == "FINISHED"]
            if not runs:
                print("error: no FINISHED run to group", file=sys.stderr)
                return 1
        keys = args.group_by or default_keys(runs)
        try:
            print("\n" + group_table(runs, keys, args.baseline))
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        png = plot_groups(runs, keys, png_path, f"{args.experiment}: by {', '.join(keys)} (mean ± sd over seeds)")
    print(f"\ncurves: {png}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from diadem_ray.rewards.benchmark import evaluate, format_report, load_annotations, load_predictions
    from diadem_ray.rewards.extract import make_extractor
    from diadem_ray.rewards.speakers import make_judge

    for label, path in (("--annotations", args.annotations), ("--predictions", args.predictions)):
        problem = not_regular_file(label, path)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    if args.per_sample:
        problem = not_writable_file("--per-sample", args.per_sample)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    generate = None
    if args.extractor == "llm" or args.speaker_judge in ("llm", "mllm"):
        if not args.judge_model:
            print(
                "error: --extractor llm and --speaker-judge llm/mllm need a local model: pass --judge-model DIR",
                file=sys.stderr,
            )
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
    for label, path, loaded in (("--annotations", args.annotations, ann), ("--predictions", args.predictions, preds)):
        if not loaded:
            for p in problems[:20]:
                print(f"  - {p}", file=sys.stderr)
            print(
                f"error: {label} {path}: no usable lines (empty, or every line has a problem listed above); nothing "
                "to score",
                file=sys.stderr,
            )
            return 1
    res = evaluate(
        ann,
        preds,
        extract=extract,
        judge=judge,
        max_caption_chars=args.max_caption_chars,
        max_lines=args.max_lines,
        input_problems=problems,
    )
    print(format_report(res))
    if args.per_sample:
        out = Path(args.per_sample)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for row in res.rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"\nper-sample results: {out} ({len(res.rows)} lines)")
    return 1 if res.input_problems else 0


def cmd_serve(args: argparse.Namespace) -> int:

    cfg = loaded_config(args.config, args.overrides)
    if cfg is None:
        return 1
    s = cfg.serve
    if args.checkpoint:
        from diadem_ray.models.policy import SERVED, PolicyError, read_policy

        try:
            policy_dir, meta = read_policy(args.checkpoint, SERVED)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"captioner: {meta.family} from run {meta.run!r} after {meta.stage} (policy_version "
            f"{meta.policy_version}), "
            f"{policy_dir}",
            flush=True,
        )
    import time

    import ray

    from diadem_ray.serve import deploy

    host = args.host or s.host
    port = args.port or s.port
    import signal

    def _stop(signum, _frame):  # `kill PID` and Ctrl-C both shut Serve and the private Ray down
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # (a shell starts background jobs with SIGINT ignored; restore it, and handle SIGTERM the same)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    ray.init(address=args.ray_address or "local", include_dashboard=False, log_to_driver=False)
    try:
        deploy(
            host=host,
            port=port,
            policy=args.checkpoint,
            engine=s.engine,
            num_cpus=s.replica_num_cpus,
            num_replicas=s.num_replicas,
            max_batch_size=s.max_batch_size,
            batch_wait_timeout_s=s.batch_wait_timeout_s,
            max_clip_duration_s=s.max_clip_duration_s,
            allowed_uri_roots=s.allowed_uri_roots,
            max_caption_chars=s.max_caption_chars,
            max_dialogue_lines=s.max_dialogue_lines,
            max_line_chars=s.max_line_chars,
            max_request_bytes=s.max_score_request_bytes,
            max_clip_bytes=s.max_clip_bytes,
            max_align_work=s.max_align_work,
            max_judge_speakers=s.max_judge_speakers,
            score_threads=s.score_threads,
            max_frame_pixels=s.max_frame_pixels,
            max_decoded_bytes=s.max_decoded_bytes,
        )
        routes = "POST /caption, POST /score" if args.checkpoint else "POST /score (no --checkpoint: no /caption)"
        print(f"serving on http://{host}:{port}  ({routes}, GET /healthz, docs at /docs); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
