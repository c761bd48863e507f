"""Load test of POST /score: N concurrent clients for T seconds against a local Ray Serve app on
127.0.0.1; reports requests, errors, throughput and p50/p99 latency. Bounded in time and count.
With ``--adversarial F``: a share F of the requests are hostile ones at the limits (the largest
alignment the work limit lets through, 100,000-character captions built to make a backtracking
parser crawl, requests over the work limit, invalid Unicode); well-formed and hostile requests get
separate rows, and a probe measures GET /healthz throughout. With ``--caption RUN --clips DIR``:
POST /caption latency with that run's exported policy, one client at a time and then
``--clients`` at once (dynamic batching), on the clips of DIR.

    .venv/bin/python bench/serve_load.py [--clients 32] [--seconds 30] [--adversarial 0.1]
    .venv/bin/python bench/serve_load.py --caption runs/demo-cpu --clips runs/data/eval/videos --clients 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
import time
from functools import partial
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--adversarial", type=float, default=0.0, help="share of hostile requests at the limits (0-1)")
    ap.add_argument("--caption", default=None, help="run directory whose policy/ serves POST /caption")
    ap.add_argument("--clips", default=None, help="folder of .mp4 clips for --caption")
    ap.add_argument("--requests", type=int, default=8, help="--caption: requests per phase")
    ap.add_argument("--engine", default="vllm", choices=("vllm", "hf"), help="--caption: the captioner's engine")
    args = ap.parse_args()
    if args.caption:
        return caption_bench(args)
    import ray
    from ray import serve

    from diadem_ray.serve import deploy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    deploy(host="127.0.0.1", port=port, num_cpus=0.5)
    rng = random.Random(0)
    words = "where were you last night at the office I waited for hours sorry the train was late".split()
    bodies = []
    for _ in range(64):
        ref = [f"{'AB'[k % 2]}: " + " ".join(rng.choice(words) for _ in range(8)) for k in range(10)]
        cap = "\n".join(f'{line.split(": ")[0]}: "{line.split(": ")[1]}"' for line in ref if rng.random() < 0.9)
        bodies.append(json.dumps({"caption": cap, "reference": ref}).encode())
    hostile = hostile_bodies()
    latencies, errors, lock = [], [], threading.Lock()
    hostile_lat: list = []
    hostile_status: dict = {}
    health: list = []
    deadline = time.perf_counter() + args.seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = 0
        pick = random.Random(i)
        while time.perf_counter() < deadline and len(latencies) < args.max_requests:
            bad = pick.random() < args.adversarial
            body = hostile[(i + n) % len(hostile)] if bad else bodies[(i + n) % len(bodies)]
            n += 1
            t = time.perf_counter()
            try:
                conn.request("POST", "/score", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except Exception as exc:  # counted, and the connection is rebuilt
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = type(exc).__name__
            seconds = time.perf_counter() - t
            with lock:
                if bad:
                    hostile_lat.append(seconds)
                    hostile_status[status] = hostile_status.get(status, 0) + 1
                elif status == 200:
                    latencies.append(seconds)
                else:
                    errors.append(str(status))

    def probe() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            health.append(time.perf_counter() - t)
            time.sleep(0.25)

    prober = threading.Thread(target=probe)
    prober.start()
    elapsed = run_clients(client, args.clients)
    prober.join()
    serve.shutdown()
    ray.shutdown()
    print(
        "| requests | clients | seconds | requests | errors | requests/s | p50 ms | p99 ms "
        "|\n|---|---|---|---|---|---|---|---|"
    )
    print(_row("well-formed", args.clients, elapsed, latencies, len(errors)))
    if args.adversarial > 0:
        print(_row("hostile", args.clients, elapsed, hostile_lat, 0))
        print(f"hostile answers by status: {dict(sorted(hostile_status.items(), key=str))}")
    print(
        f"GET /healthz while loaded: {len(health)} probes, max {max(health) * 1000:.1f} ms, "
        f"median {sorted(health)[len(health) // 2] * 1000:.1f} ms"
    )
    if errors:
        print("errors:", sorted(set(errors))[:5])


def _row(label: str, clients: int, elapsed: float, latencies: list, errors: int) -> str:
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return (
        f"| {label} | {clients} | {elapsed:.1f} | {len(lat)} | {errors} | {len(lat) / elapsed:.1f} | {p(0.5):.1f} "
        f"| {p(0.99):.1f} |"
    )


def hostile_bodies() -> list:
    """Requests at the default limits: each is answered (200, 413 or 422) in bounded time."""
    rng = random.Random(1)
    unrelated = lambda n, k: ["A: " + "".join(rng.choice("abcdefghij") for _ in range(k)) for _ in range(n)]  # noqa: E731
    ref = ["A: where were you", "B: at the office"]
    return [
        json.dumps(b).encode()
        for b in (
            {"dialogue": unrelated(160, 40), "reference": unrelated(160, 40)},  # the largest alignment allowed (~1 s)
            {"dialogue": unrelated(60, 1000), "reference": unrelated(60, 1000)},  # over the work limit: 413
            {"caption": "0:01 - 0:02" + " " * 99_980 + "x", "reference": ref},  # cubic for a backtracking parser
            {"caption": 'A: "x' + " " * 99_990 + 'y"', "reference": ref},
            {"caption": "“" * 50_000 + 'He says "a". ' * 3_800, "reference": ref, "extractor": "prose"},
            {"dialogue": ["\ud800: hi"], "reference": ref},  # a lone surrogate: 422
        )
    ]


def run_clients(client, n: int) -> float:
    """Run ``client(i)`` in ``n`` threads at once; wall seconds until all return."""
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def caption_bench(args) -> None:
    import glob
    import os

    import ray
    from ray import serve

    from diadem_ray.serve import deploy

    clips = sorted(glob.glob(os.path.join(args.clips, "*.mp4")))[: args.requests]
    if not clips:
        raise SystemExit(f"--clips {args.clips}: no .mp4 files")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    deploy(
        host="127.0.0.1",
        port=port,
        policy=args.caption,
        engine=args.engine,
        num_cpus=2,
        max_batch_size=8,
        batch_wait_timeout_s=0.2,
    )
    ready = time.perf_counter() - t0

    def one(path: str):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        t = time.perf_counter()
        conn.request("POST", "/caption", open(path, "rb").read(), {"Content-Type": "video/mp4"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        return resp.status, time.perf_counter() - t, body

    one(clips[0])  # warm-up: first request compiles / allocates
    rows = []

    def client(_i: int, *, queue: list, lock: Any, lat: list, statuses: list, sizes: list) -> None:
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop()
            status, seconds, body = one(path)
            with lock:
                lat.append(seconds)
                statuses.append(status)
                sizes.append(body.get("batch_size", 0))

    for label, clients in (("sequential", 1), (f"{args.clients} at once", args.clients)):
        lat: list = []
        statuses: list = []
        sizes: list = []
        work = partial(client, queue=list(clips), lock=threading.Lock(), lat=lat, statuses=statuses, sizes=sizes)
        wall = run_clients(work, clients)
        lat.sort()
        rows.append(
            (label, len(lat), sum(s != 200 for s in statuses), len(lat) / wall, lat[len(lat) // 2], lat[-1], max(sizes))
        )
    serve.shutdown()
    ray.shutdown()
    print(f"replica ready in {ready:.0f} s ({args.engine} engine + Whisper + policy load)")
    print("| clients | requests | errors | clips/s | p50 s | max s | largest batch |\n|---|---|---|---|---|---|---|")
    for label, n, errors, rate, p50, worst, batch in rows:
        print(f"| {label} | {n} | {errors} | {rate:.2f} | {p50:.2f} | {worst:.2f} | {batch} |")


if __name__ == "__main__":
    main()
