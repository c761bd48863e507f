"""Decode pool throughput and memory: tiny_av clips (decode + frame reading + Whisper tiny.en)
per second per CPU through the decode workers, with the driver feeding ``--lookahead`` clips ahead,
and peak RSS of the driver and of the Ray worker processes for a dataset and one 10x longer
(memory must stay flat: only the evidence text and the clips in flight are held).

The 10x dataset repeats the 1x clips' videos under new clip ids (decode work is real: every clip
is decoded; no cache).

    .venv/bin/python bench/data_throughput.py --clips 12 --repeats 3
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
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lookahead", type=int, default=4)
    args = ap.parse_args()

    import ray

    from diadem_ray.cluster.decode_pool import DecodePool
    from diadem_ray.data.feed import FeedStats, ListFeed
    from diadem_ray.data.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="diadem-data-bench-"))
    clips = synthesize(tmp / "x1", args.clips, seed=42, workers=2, progress=False)
    big = [replace(c, clip_id=f"{c.clip_id}-r{k}") for k in range(10) for c in clips]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300_000_000)
    pool = DecodePool(num_workers=args.workers, num_cpus_per_worker=2 / args.workers, family="tiny_av", max_frames=96)
    pool.nodes()  # front-ends loaded
    rows = {}
    for name, items in (("1x", clips), ("10x", big)):
        rates, peaks, driver = [], [], []
        for _ in range(args.repeats if name == "1x" else 1):
            stats = FeedStats()
            t0 = time.perf_counter()
            with PeakRSS() as mon:
                n = sum(len(g) for _, g in ListFeed(pool, items, lookahead=args.lookahead, stats=stats).groups(4))
            assert n == len(items) and not stats.failed
            rates.append(n / (time.perf_counter() - t0) / 2)  # 2 CPUs
            peaks.append(mon.peak)
            driver.append(mon.driver_peak)
        rows[name] = (len(items), statistics.median(rates), max(peaks), max(driver))
    driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pool.shutdown()
    ray.shutdown()
    print(
        f"| dataset | clips | clips/s per CPU (median of {args.repeats} for 1x) | peak RSS of Ray workers | peak RSS "
        "of the driver |"
    )
    print("|---|---|---|---|---|")
    for name, (n, rate, peak, drv) in rows.items():
        print(f"| {name} | {n} | {rate:.2f} | {peak / 2**20:.0f} MiB | {drv / 2**20:.0f} MiB |")
    print(f"\n10x / 1x peak: workers {rows['10x'][2] / rows['1x'][2]:.3f}, driver {rows['10x'][3] / rows['1x'][3]:.3f}")
    print(f"driver peak RSS over the whole run: {driver_peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
