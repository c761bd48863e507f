"""Data plane throughput and memory: clips decoded per second per CPU through Ray Data, and peak
RSS of the driver and of the Ray worker processes for a dataset and one 10x larger (memory must
stay flat: rows stream through ``iter_rows``; media never reach the driver).

The 10x dataset repeats the 1x clips' videos under new clip ids in 10x as many shards (decode
work is real: every row is decoded). Also reports the tiny_av front-end (decode + Whisper +
frame reading) on the 1x set.

    .venv/bin/python bench/data_throughput.py --clips 24 --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil


class PeakRSS:
    """Samples, every 0.2 s, the summed RSS of the Ray worker processes (``peak``) and this
    driver process's own RSS (``driver_peak``)."""

    def __init__(self) -> None:
        self.peak = 0
        self.driver_peak = 0
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
                cmd = " ".join(p.info.get("cmdline") or [])
                if "ray::" in (p.info.get("name") or "") or "ray::" in cmd or "default_worker.py" in cmd:
                    total += p.info["memory_info"].rss if p.info.get("memory_info") else 0
            self.peak = max(self.peak, total)
            self.driver_peak = max(self.driver_peak, self._me.memory_info().rss)
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()

    import ray

    from diadem_ray.data.pipeline import encode_clips
    from diadem_ray.data.shards import list_shards, write_shards
    from diadem_ray.data.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="diadem-data-bench-"))
    clips = synthesize(tmp / "x1", args.clips, seed=42, workers=2, progress=False)
    big = [replace(c, clip_id=f"{c.clip_id}-r{k}") for k in range(10) for c in clips]
    write_shards(big, str(tmp / "x10" / "shards"), clips_per_shard=max(1, args.clips // 4))
    write_shards(clips, str(tmp / "x1b" / "shards"), clips_per_shard=max(1, args.clips // 4))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300_000_000)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = {}
    for name, root, n in (("1x", tmp / "x1b" / "shards", len(clips)), ("10x", tmp / "x10" / "shards", len(big))):
        rates, peaks, driver = [], [], []
        for _ in range(args.repeats):
            with PeakRSS() as mon:
                rep = encode_clips(list_shards(str(root)), cache_dir=str(tmp / "cache"), frontend=False,
                                   concurrency=args.concurrency)
            assert len(rep.features) == n and not rep.failed
            rates.append(n / rep.seconds / 2)  # 2 CPUs
            peaks.append(mon.peak)
            driver.append(mon.driver_peak)
        rows[name] = (n, statistics.median(rates), max(peaks), max(driver))
    t0 = time.perf_counter()
    rep = encode_clips(list_shards(str(tmp / "x1b" / "shards")), cache_dir=str(tmp / "cache_fe"), concurrency=args.concurrency)
    fe_rate = len(rep.features) / (time.perf_counter() - t0) / 2
    driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ray.shutdown()
    print(f"| dataset | clips | decoded clips/s per CPU (median of {args.repeats}) | peak RSS of Ray workers | peak RSS of the driver |")
    print("|---|---|---|---|---|")
    for name, (n, rate, peak, drv) in rows.items():
        print(f"| {name} | {n} | {rate:.2f} | {peak / 2**20:.0f} MiB | {drv / 2**20:.0f} MiB |")
    print(f"\n10x / 1x peak: workers {rows['10x'][2] / rows['1x'][2]:.3f}, driver {rows['10x'][3] / rows['1x'][3]:.3f} "
          "(the 1x passes run first, so driver growth would show in the 10x figure)")
    print(f"driver peak RSS over the whole run (incl. the front-end pass): {driver_peak / 2**20:.0f} MiB")
    print(f"tiny_av front-end (decode + frames + Whisper tiny.en) on 1x: {fe_rate:.2f} clips/s per CPU")


if __name__ == "__main__":
    main()
