"""Benchmark the real service: ``faceops serve`` (uvicorn) on 127.0.0.1, driven by concurrent HTTP clients.

For detect and recognize on LFW photos, at each concurrency level, it reports throughput, p50 / p95 / p99
latency, error rate and the server's memory (peak RSS of the process tree), and writes them as JSON::

    .venv/bin/python benchmarks/bench_serving.py --out benchmarks/results/serving.json \
        --keep-old benchmarks/results/serving.json

Several servers (``--variants``: a bundle and the detector backend) are started and driven one after another at
each level, so they are compared side by side under the same load; each row also has the mean time per service
stage (decode, detect, embed, search, log) read from the server's /metrics. The number of requests and the time
per level are bounded (``--requests``, ``--max-seconds``).
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


def _stage_sums(url: str, key: str) -> dict[str, tuple[float, float]]:
    """(count, seconds) per request stage from the server's /metrics (``faceops_stage_seconds``)."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": key}, timeout=30).text
    sums: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_count{", 0), ("_sum{", 1)):
            if line.startswith("faceops_stage_seconds" + suffix):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                sums.setdefault(stage, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in sums.items()}


def _stage_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per call of each stage between two /metrics readings."""
    out = {}
    for stage, (count, seconds) in after.items():
        c0, s0 = before.get(stage, (0.0, 0.0))
        if count > c0:
            out[stage] = round(1000 * (seconds - s0) / (count - c0), 1)
    return out


class _Server:
    """``faceops serve`` of one bundle in a subprocess, with its own state folder and port."""

    def __init__(self, faceops: Path, bundle: Path, keys: Path, tmp: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [faceops, "serve", "--bundle", bundle, "--state-dir", tmp / f"state-{self.port}",
             "--api-keys-file", keys, "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )

    def wait_ready(self, key: str) -> float:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{self.url}/ready", headers={"X-API-Key": key}, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.perf_counter() - started > 600:
                raise SystemExit(f"server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


def _bundle(kind: str, tmp: Path) -> Path:
    """A model bundle folder: ``irv1`` (the pretrained InceptionResnetV1), ``mobilefacenet`` (its variant), or a
    path to a saved bundle."""
    from faceops.evaluation.bundle import ModelBundle

    if kind == "irv1":
        return ModelBundle.pretrained().save(tmp / "bundle-irv1")
    if kind == "mobilefacenet":
        from faceops.optimize import build_variant

        return build_variant(ModelBundle.pretrained(), "mobilefacenet").save(tmp / "bundle-mobilefacenet")
    return Path(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument(
        "--variants",
        default="irv1:torch,mobilefacenet:torch,mobilefacenet:onnxruntime",
        help="Comma-separated BUNDLE:DETECTOR_BACKEND servers, driven alternately; BUNDLE is irv1, mobilefacenet "
        "or a bundle folder.",
    )
    parser.add_argument("--endpoints", default="detect,recognize")
    parser.add_argument("--concurrency", default="1,4", help="Comma-separated client counts.")
    parser.add_argument("--requests", type=int, default=40, help="Requests per endpoint and level.")
    parser.add_argument("--repeats", type=int, default=1, help="Rounds over every variant and level.")
    parser.add_argument("--max-seconds", type=float, default=120, help="Time cap per level.")
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--inference-threads", type=int, default=2, help="Concurrent inference jobs.")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads per job.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-old", type=Path, help="A previous serving.json whose results are kept as rows.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = parser.parse_args()
    weights = args.shared / "weights" / "inception_resnet_v1_casia-webface.pt"
    os.environ.setdefault("FACEOPS_WEIGHTS", str(weights))
    faceops = Path(sys.executable).with_name("faceops")
    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    old = json.loads(args.keep_old.read_text()) if args.keep_old and args.keep_old.exists() else None
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        bundles = {kind: _bundle(kind, tmp) for kind in dict.fromkeys(k for k, _ in variants)}
        keys = tmp / "keys.txt"
        key = subprocess.run(
            [faceops, "serve", "--new-key", "bench", "--api-keys-file", keys],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        env = {
            "FACEOPS_SERVE_RATE_LIMIT_PER_MINUTE": "0",
            "FACEOPS_SERVE_INFERENCE_THREADS": str(args.inference_threads),
            "FACEOPS_SERVE_TORCH_THREADS": str(args.torch_threads),
        }
        servers: dict[str, _Server] = {}
        startup: dict[str, float] = {}
        enrol, queries = _photos(args.shared / "datasets" / "lfw", args.people, args.seed)
        photos = [p.read_bytes() for p in queries]
        try:
            for kind, backend in variants:
                name = f"{kind}:{backend}"
                # started one at a time: start-up (model load, ONNX export of MTCNN's nets) is measured alone
                servers[name] = _Server(faceops, bundles[kind], keys, tmp, {**env, "FACEOPS_SERVE_DETECTOR_BACKEND": backend})
                startup[name] = servers[name].wait_ready(key)
                for person, paths in enrol.items():
                    r = httpx.post(
                        f"{servers[name].url}/v1/identities",
                        headers={"X-API-Key": key},
                        data={"identity": person},
                        files=[("images", (p.name, p.read_bytes())) for p in paths],
                        timeout=300,
                    )
                    r.raise_for_status()
            results = []
            memories = {name: _Memory(server.process.pid).__enter__() for name, server in servers.items()}
            idle = {name: round(m.now_mb(), 1) for name, m in memories.items()}
            for repeat in range(args.repeats):
                for endpoint in args.endpoints.split(","):
                    for c in (int(x) for x in args.concurrency.split(",")):
                        # every variant at this level, one after another: load drift hits them alike
                        for name, server in servers.items():
                            before = _stage_sums(server.url, key)
                            row = {"variant": name, "repeat": repeat}
                            row |= asyncio.run(_drive(server.url, key, endpoint, photos, c, args.requests, args.max_seconds))
                            row["stage_ms"] = _stage_ms(before, _stage_sums(server.url, key))
                            row["server_rss_peak_mb"] = round(memories[name].peak, 1)
                            row["loadavg_1min"] = round(os.getloadavg()[0], 2)
                            results.append(row)
                            print(json.dumps(row), flush=True)
            for memory in memories.values():
                memory.__exit__(None, None, None)
        finally:
            for server in servers.values():
                server.stop()
    loads.append(os.getloadavg())
    payload = {
        "benchmark": "serving",
        "command": " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_start_end": loads,
            "note": "the servers and the load-generating clients share these cores (one server is driven at a "
            "time, the others idle); load_avg includes this benchmark's own load; with a 1-minute load above the "
            "core count the figures are relative (compare variants within this file), not absolute",
        },
        "server": {
            "startup_s": {k: round(v, 1) for k, v in startup.items()},
            "idle_rss_mb": idle,
            "uvicorn_workers": 1,
            "inference_threads": args.inference_threads,
            "torch_threads": args.torch_threads,
        },
        "target": {"endpoint": "recognize", "concurrency": 4, "throughput_rps_min": 20, "p99_ms_max": 300},
        "data": {"query_photos": len(photos), "enrolled_identities": len(enrol), "source": "LFW (../shared)"},
        "stage_ms": "mean ms per call of each service stage during the level, from the server's "
        "faceops_stage_seconds histogram: decode, detect (MTCNN), embed (alignment + network), search, log",
        "results": results,
    }
    if old is not None:
        payload["previous"] = {
            "note": "the earlier measurement kept for comparison: InceptionResnetV1 (torch), MTCNN on torch",
            "when": old.get("when"),
            "machine": old.get("machine"),
            "results": old.get("results", []) if "previous" not in old else old["previous"].get("results", []),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
