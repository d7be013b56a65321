"""Benchmark the real service: ``faceops serve`` (uvicorn) on 127.0.0.1, driven by concurrent HTTP clients.

For detect and recognize on LFW photos, at each concurrency level, it reports throughput, p50 / p95 / p99
latency, error rate and the server's memory (peak RSS of the process tree), and writes them as JSON::

    .venv/bin/python benchmarks/bench_serving.py --out benchmarks/results/serving.json

The number of requests and the time per level are bounded (``--requests``, ``--max-seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photos(lfw: Path, n_people: int, seed: int) -> tuple[dict[str, list[Path]], list[Path]]:
    """People to enrol (2 photos each) and query photos (their other photos plus strangers)."""
    rng = random.Random(seed)
    names = (lfw / "people_min10.txt").read_text().split()
    names = [n for n in names if (lfw / n).is_dir()]
    chosen = rng.sample(names, n_people)
    enrol = {n: sorted((lfw / n).glob("*.jpg"))[:2] for n in chosen}
    queries = [p for n in chosen for p in sorted((lfw / n).glob("*.jpg"))[2:6]]
    strangers = rng.sample([d for d in lfw.iterdir() if d.is_dir() and d.name not in names], n_people)
    queries += [next(d.glob("*.jpg")) for d in strangers]
    rng.shuffle(queries)
    return enrol, queries


class _Memory:
    """Samples the RSS of the server's process tree in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now_mb())
            time.sleep(0.1)

    def __enter__(self) -> _Memory:
        self.peak = self.now_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _drive(
    url: str, key: str, endpoint: str, photos: list[bytes], concurrency: int, n: int, max_seconds: float
) -> dict:
    latencies, errors, statuses = [], 0, {}
    counter = iter(range(n))
    deadline = time.perf_counter() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                r = await client.post(f"/v1/{endpoint}", files={"image": ("q.jpg", photos[i % len(photos)])})
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            errors += status != 200

    limits = httpx.Limits(max_connections=concurrency)
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "error_rate": round(errors / max(len(latencies), 1), 4),
        "statuses": statuses,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 3),
        "latency_ms": {
            k: round(float(np.percentile(ms, q)), 1) for k, q in (("p50", 50), ("p95", 95), ("p99", 99))
        }
        | {"mean": round(float(ms.mean()), 1), "max": round(float(ms.max()), 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--bundle", type=Path, help="Model bundle folder (default: the pretrained model).")
    parser.add_argument("--concurrency", default="1,4", help="Comma-separated client counts.")
    parser.add_argument("--requests", type=int, default=40, help="Requests per endpoint and level.")
    parser.add_argument("--max-seconds", type=float, default=120, help="Time cap per level.")
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--inference-threads", type=int, default=2, help="Concurrent inference jobs.")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads per job.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = parser.parse_args()
    weights = args.shared / "weights" / "inception_resnet_v1_casia-webface.pt"
    os.environ.setdefault("FACEOPS_WEIGHTS", str(weights))
    faceops = Path(sys.executable).with_name("faceops")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = args.bundle
        if bundle is None:
            from faceops.evaluation.bundle import ModelBundle

            bundle = ModelBundle.pretrained().save(tmp / "bundle")
        keys = tmp / "keys.txt"
        key = subprocess.run(
            [faceops, "serve", "--new-key", "bench", "--api-keys-file", keys],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (tmp / "server.log").open("w")
        server = subprocess.Popen(
            [
                faceops,
                "serve",
                "--bundle",
                bundle,
                "--state-dir",
                tmp / "state",
                "--api-keys-file",
                keys,
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "FACEOPS_SERVE_RATE_LIMIT_PER_MINUTE": "0",
                "FACEOPS_SERVE_INFERENCE_THREADS": str(args.inference_threads),
                "FACEOPS_SERVE_TORCH_THREADS": str(args.torch_threads),
            },
        )
        try:
            started = time.perf_counter()
            while True:
                try:
                    if httpx.get(f"{url}/ready", headers={"X-API-Key": key}, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit(f"server did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
            startup_s = time.perf_counter() - started
            enrol, queries = _photos(args.shared / "datasets" / "lfw", args.people, args.seed)
            for name, paths in enrol.items():
                r = httpx.post(
                    f"{url}/v1/identities",
                    headers={"X-API-Key": key},
                    data={"identity": name},
                    files=[("images", (p.name, p.read_bytes())) for p in paths],
                    timeout=300,
                )
                r.raise_for_status()
            photos = [p.read_bytes() for p in queries]
            results = []
            with _Memory(server.pid) as memory:
                idle_mb = memory.now_mb()
                for endpoint in ("detect", "recognize"):
                    for c in (int(x) for x in args.concurrency.split(",")):
                        before = memory.peak
                        row = asyncio.run(
                            _drive(url, key, endpoint, photos, c, args.requests, args.max_seconds)
                        )
                        row["server_rss_peak_mb"] = round(max(memory.peak, before), 1)
                        results.append(row)
                        print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    payload = {
        "benchmark": "serving",
        "command": " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
            "note": "the server and the load-generating clients share these cores; load_avg is read at the end "
            "(this benchmark's own load included)",
        },
        "server": {
            "startup_s": round(startup_s, 1),
            "idle_rss_mb": round(idle_mb, 1),
            "uvicorn_workers": 1,
            "inference_threads": args.inference_threads,
            "torch_threads": args.torch_threads,
        },
        "data": {"query_photos": len(photos), "enrolled_identities": len(enrol), "source": "LFW (../shared)"},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
