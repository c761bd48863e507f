"""``diadem-ray annotate``: reference dialogues from raw video (:mod:`diadem_ray.annotate`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _default_config() -> Path:
    here = Path(__file__).resolve().parents[2] / "configs" / "base.yaml"
    return Path("configs/base.yaml") if Path("configs/base.yaml").is_file() else here


def cmd_annotate(args: argparse.Namespace) -> int:
    from diadem_ray.cli.checks import loaded_config
    from diadem_ray.config import AnnotateConfig, plain

    config = args.config or str(_default_config())
    cfg = loaded_config(config, args.overrides)
    if cfg is None:
        return 1
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {args.out}: exists and is not a folder; give a new or existing folder", file=sys.stderr)
        return 1
    from diadem_ray.annotate.job import clip_ids, list_videos, run_annotate, write_outputs
    from diadem_ray.annotate.speech import asr_model_dir

    try:
        videos = list_videos(args.videos)
        asr_model_dir(cfg.annotate.asr_model)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    import ray

    from diadem_ray.driver.resources import connect_ray

    settings = AnnotateConfig(**plain(cfg.annotate))
    t0 = time.perf_counter()
    own = connect_ray(cfg.cluster)
    try:
        rep = run_annotate(videos, clip_ids(videos, args.videos), out, settings)
    finally:
        if own:
            ray.shutdown()
    write_outputs(rep, out, settings)
    wall = time.perf_counter() - t0
    for video, reason in rep.skipped:
        print(f"skipped {video}: {reason}", file=sys.stderr)
    for clip_id, reason in rep.dropped:
        print(f"dropped {clip_id}: {reason}", file=sys.stderr)
    print(
        f"{len(videos)} video(s): {len(rep.clips)} dialogue(s) kept, {len(rep.dropped)} dropped, "
        f"{len(rep.skipped)} video(s) skipped; {wall:.0f} s wall, {rep.worker_seconds:.0f} s in workers"
    )
    print(f"shards: {out / 'shards'}\nannotations: {out / 'annotations.jsonl'}\nreport: {out / 'report.jsonl'}")
    return 0 if rep.clips else 1
