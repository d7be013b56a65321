"""The real service with a million-face gallery: ``faceops serve`` on a state folder built by the gallery benchmark.

Steps: save the pretrained model as a bundle; unless the state folder already holds it, build the gallery there
with ``benchmarks/gallery_index.py --keep`` (fitted synthetic identities, stamped with the bundle's model id, so
the service serves it instead of starting empty); start ``faceops serve`` and time its start-up (from the process
start to ``/ready`` 200; the server log tells whether the gallery's index file was loaded or rebuilt); enrol a few
real LFW people through the API (enrolment latency at 1M); then drive ``/v1/recognize`` with concurrent clients
(LFW photos of the enrolled people and of strangers: one 1:N search per face) and record throughput, p50/p99,
errors and the server's RSS. Writes JSON::

    nice -n 5 .venv/bin/python benchmarks/serving_1m.py --size 1000000 --out benchmarks/results/serving_1m.json
    .venv/bin/python benchmarks/serving_1m.py --size 20000 --out /tmp/s.json    # a quick check of the script

The machine is shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

# run as `python benchmarks/serving_1m.py`: this folder is on sys.path, so the serving benchmark's tools import
from bench_serving import _drive, _free_port, _Memory, _photos

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_ID = """
import sys
from pathlib import Path
from faceops.evaluation.bundle import ModelBundle
path = Path(sys.argv[1])
if not (path / "bundle.json").is_file():
    (ModelBundle.default() if sys.argv[2] == "default" else ModelBundle.pretrained()).save(path)
print(ModelBundle.load(path).recognizer().model_id)
"""


def _model_id(bundle: Path, model: str) -> str:
    """Save the model's bundle unless it is there (in a child process: torch stays out of this one); its model id."""
    out = subprocess.run([sys.executable, "-c", BUNDLE_ID, str(bundle), model], check=True, capture_output=True,
                         text=True)
    return out.stdout.strip().splitlines()[-1]


def _build(state: Path, size: int, model_id: str, threads: int, result: Path, partial: bool, model: str) -> float:
    """The gallery benchmark's row for ``size``, keeping its gallery in ``state``; returns the wall time."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gallery_index.py"), "--sizes", str(size), "--libraries",
         "faiss-pq-fastscan", "--data", "fitted", "--build-threads", str(threads), "--keep", str(state), "--model-id",
         model_id, "--out", str(result), "--model", model, *(["--lfw-partial"] if partial else [])],
        check=True,
    )
    return time.perf_counter() - started


def _wait_ready(url: str, key: str, server: subprocess.Popen, log: Path, limit: float) -> float:
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{url}/ready", headers={"X-API-Key": key}, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.perf_counter() - started > limit:
            raise SystemExit(f"the server did not get ready:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="embeddings in the gallery")
    parser.add_argument("--state", type=Path, help="the state folder (default outputs/serving-<size>)")
    parser.add_argument("--build-threads", type=int, default=2, help="index build threads of the gallery benchmark")
    parser.add_argument("--gallery-result", type=Path, default=ROOT / "benchmarks" / "results" / "gallery_index.json",
                        help="where the gallery benchmark writes its row")
    parser.add_argument("--lfw-partial", action="store_true", help="fit the synthetic data on the LFW photos embedded "
                        "so far (see gallery_index.py)")
    parser.add_argument("--model", default="inception", choices=["default", "inception"],
                        help="the served model: the default (MobileFaceNet, 128-d) or InceptionResnetV1 (512-d)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--people", type=int, default=4, help="real people enrolled through the API")
    parser.add_argument("--ready-timeout", type=float, default=3600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving_1m.json")
    args = parser.parse_args()
    shared = Path(os.environ.get("FACEOPS_SHARED_DIR", ROOT.parent / "shared"))
    os.environ.setdefault("FACEOPS_WEIGHTS", str(shared / "weights" / "inception_resnet_v1_casia-webface.pt"))
    load_before = os.getloadavg()
    work = args.state or ROOT / "outputs" / f"serving-{args.size}"
    state, bundle = work / "state", work / "bundle"
    faceops = Path(sys.executable).with_name("faceops")
    model_id = _model_id(bundle, args.model)
    built_s = None
    if not (state / "gallery.npz").is_file():
        print(f"building the {args.size}-embedding gallery in {state}", flush=True)
        built_s = _build(state, args.size, model_id, args.build_threads, args.gallery_result, args.lfw_partial,
                         args.model)
    keys = work / "keys.txt"
    keys.unlink(missing_ok=True)
    key = subprocess.run([faceops, "serve", "--new-key", "bench", "--api-keys-file", keys], check=True,
                         capture_output=True, text=True).stdout.strip()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [faceops, "serve", "--bundle", bundle, "--state-dir", state, "--api-keys-file", keys, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "FACEOPS_SERVE_RATE_LIMIT_PER_MINUTE": "0", "FACEOPS_SERVE_INFERENCE_THREADS": "2",
                 "FACEOPS_SERVE_TORCH_THREADS": "1"},
        )
        memory = _Memory(server.pid)
        try:
            with memory:
                startup_s = _wait_ready(url, key, server, log_path, args.ready_timeout)
                ready = httpx.get(f"{url}/ready", headers={"X-API-Key": key}, timeout=30).json()
                start_peak_mb, idle_mb = memory.peak, memory.now_mb()
                print(f"ready in {startup_s:.1f} s, RSS {idle_mb:.0f} MB (peak {start_peak_mb:.0f})", flush=True)
                enrol, queries = _photos(shared / "datasets" / "lfw", args.people, args.seed)
                enrol_s = []
                for name, paths in enrol.items():
                    t0 = time.perf_counter()
                    r = httpx.post(f"{url}/v1/identities", headers={"X-API-Key": key}, data={"identity": name},
                                   files=[("images", (p.name, p.read_bytes())) for p in paths], timeout=1800)
                    enrol_s.append(round(time.perf_counter() - t0, 2))
                    if r.status_code not in (201, 409):
                        r.raise_for_status()
                    print(f"enrolled {name}: {r.status_code} in {enrol_s[-1]} s", flush=True)
                photos = [p.read_bytes() for p in queries]
                before = memory.peak
                row = asyncio.run(_drive(url, key, "recognize", photos, args.clients, args.requests,
                                         args.max_seconds))
                row["server_rss_peak_mb"] = round(max(memory.peak, before), 1)
                print(json.dumps(row), flush=True)
                after_mb = memory.now_mb()
                delete_s = []
                for name in enrol:
                    t0 = time.perf_counter()
                    r = httpx.delete(f"{url}/v1/identities/{name}", headers={"X-API-Key": key}, timeout=600)
                    delete_s.append(round(time.perf_counter() - t0, 3))
                    r.raise_for_status()
                print(f"deleted {len(delete_s)} identities: {delete_s} s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    text = log_path.read_text()
    rebuilt = re.findall(r"building the \w+ index of \d+ embeddings.*", text)
    built_line = re.findall(r"index of \d+ embeddings built in [\d.]+ s", text)
    result = {
        "benchmark": f"the service (faceops serve) with a {args.size}-embedding gallery, {args.clients} concurrent "
                     "recognize clients",
        "command": " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_before": [round(x, 1) for x in load_before],
                    "load_avg_after": [round(x, 1) for x in os.getloadavg()],
                    "note": "2 cores shared with other work (load averages above); the server and the clients share "
                            "them; figures are relative"},
        "gallery": {"embeddings": ready.get("gallery", {}).get("embeddings", args.size), "built_here_s": built_s and round(built_s),
                    "index_file_loaded": not rebuilt, "index_rebuilt_at_start": rebuilt + built_line,
                    "state": str(state)},
        "server": {"startup_s": round(startup_s, 1), "startup_peak_rss_mb": round(start_peak_mb),
                   "idle_rss_mb": round(idle_mb), "rss_after_mb": round(after_mb),
                   "inference_threads": 2, "torch_threads": 1},
        "model": args.model,
        "enrol_seconds": enrol_s,
        "delete_seconds": delete_s,
        "ready": {k: v for k, v in ready.items() if k not in ("alerts", "repairs")},
        "recognize": row,
        "query_photos": len(photos),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
