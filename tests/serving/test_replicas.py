"""Replicas sharing one gallery and one request log in PostgreSQL (a real server on 127.0.0.1).

Two services on two ports (real uvicorn servers, one database): an enrolment or a deletion on one is answered by
the other at once by search (it checks the change counter first) and within seconds by the listing (the background
sync); two replicas enrolling one new name at once give one 201 and one 409; many enrolments from both lose
nothing. The database going away, at start or between requests, is a 503 naming it, never a 500, and the service
recovers by itself when it is back, with every acknowledged enrolment.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from faceops.serving.app import create_app
from fastapi.testclient import TestClient

from tests.serving.serving_helpers import Hammer, LiveServer, make_settings, wait_until

pytestmark = pytest.mark.integration


def _settings(bundle_dir: Path, state: Path, api_key: str, url: str):  # type: ignore[no-untyped-def]
    return make_settings(bundle_dir, state, api_key, database_url=url, rate_limit_per_minute=0, sync_seconds=0.5)


@pytest.fixture()
def replicas(postgres, bundle_dir, api_key, tmp_path) -> Iterator[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Two services on two ports sharing one new database: their URLs and the database's."""
    url = postgres.new_database()
    apps = [create_app(_settings(bundle_dir, tmp_path / f"replica{i}", api_key, url)) for i in range(2)]
    with LiveServer(apps[0]) as a, LiveServer(apps[1]) as b:
        yield a.url, b.url, url


def _enrol(base: str, headers: dict, name: str, photos: list[Path]) -> requests.Response:
    files = [("images", (p.name, p.read_bytes())) for p in photos]
    return requests.post(f"{base}/v1/identities", data={"identity": name}, files=files, headers=headers, timeout=120)


def _recognize(base: str, headers: dict, photo: Path) -> requests.Response:
    return requests.post(f"{base}/v1/recognize", files={"image": (photo.name, photo.read_bytes())}, headers=headers, timeout=120)


def test_an_enrolment_or_deletion_on_one_replica_is_answered_by_the_other(replicas, key_header, people) -> None:
    a, b, _ = replicas
    assert _enrol(a, key_header, "Colin_Powell", people["Colin_Powell"][:2]).status_code == 201
    seen = _recognize(b, key_header, people["Colin_Powell"][3])  # search catches up before it answers
    assert seen.status_code == 200 and seen.json()["faces"][0]["identity"] == "Colin_Powell", seen.text

    t0 = time.perf_counter()  # the listing follows by the background sync alone
    assert _enrol(a, key_header, "Tony_Blair", people["Tony_Blair"][:2]).status_code == 201
    acked = time.perf_counter()
    wait_until(
        lambda: requests.get(f"{b}/v1/identities/Tony_Blair", headers=key_header, timeout=10).status_code == 200,
        10,
        "replica B to list the identity enrolled on A",
        interval=0.05,
    )
    delay = time.perf_counter() - acked
    print(f"sync delay between replicas: {delay * 1000:.0f} ms (enrolment {1000 * (acked - t0):.0f} ms)")
    assert delay < 5

    # A deletion on B racing searches on A: no search that starts after the acknowledgement finds the identity.
    def search() -> tuple[float, int, set[str]]:
        started = time.perf_counter()
        r = _recognize(a, key_header, people["Colin_Powell"][3])
        return started, r.status_code, {c["identity"] for f in r.json().get("faces", []) for c in f["candidates"]}

    with Hammer(search, lambda x: x) as hammer:
        hammer.at_least(2)
        deleted = requests.delete(f"{b}/v1/identities/Colin_Powell", headers=key_header, timeout=60)
        acknowledged = time.perf_counter()
        hammer.at_least(len(hammer.seen) + 3)
    assert deleted.status_code == 200 and deleted.json()["removed_embeddings"] == 2
    assert all(status == 200 for _, status, _ in hammer.seen), hammer.seen
    before = [names for started, _, names in hammer.seen if started < acknowledged]
    after = [names for started, _, names in hammer.seen if started > acknowledged]
    assert "Colin_Powell" in before[0] and len(after) >= 3, hammer.seen
    assert all("Colin_Powell" not in names for names in after), hammer.seen
    listed = wait_until(
        lambda: (
            (r := requests.get(f"{a}/v1/identities", headers=key_header, timeout=10).json())
            and [i["identity"] for i in r["identities"]] == ["Tony_Blair"]
            and r
        ),
        10,
        "replica A to drop the identity deleted on B",
    )
    assert listed["identities"] == [{"identity": "Tony_Blair", "embeddings": 2}]


def test_concurrent_enrolments_from_both_replicas_lose_nothing(replicas, key_header, people) -> None:
    a, b, url = replicas
    results: dict[str, list[int]] = {"same": [], "distinct": []}
    start = threading.Barrier(2)

    def run(base: str, worker: int) -> None:
        start.wait()
        results["same"].append(_enrol(base, key_header, "Donald_Rumsfeld", people["Donald_Rumsfeld"][:1]).status_code)
        for n in range(3):
            photo = people["Gerhard_Schroeder"][n % 4]
            results["distinct"].append(_enrol(base, key_header, f"p{worker}_{n}", [photo]).status_code)

    threads = [threading.Thread(target=run, args=(base, i)) for i, base in enumerate((a, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(results["same"]) == [201, 409], results  # the unique name settles the race
    assert results["distinct"] == [201] * 6, results
    expected = {"Donald_Rumsfeld": 1} | {f"p{w}_{n}": 1 for w in range(2) for n in range(3)}
    for base in (a, b):
        wait_until(
            lambda base=base: (
                {
                    i["identity"]: i["embeddings"]
                    for i in requests.get(f"{base}/v1/identities", headers=key_header, timeout=10).json()["identities"]
                }
                == expected
            ),
            10,
            f"{base} to list every enrolment",
        )
    import psycopg

    with psycopg.connect(url) as conn:  # one request log for both replicas
        rows = conn.execute("SELECT status, COUNT(*) FROM requests WHERE endpoint = 'enroll' GROUP BY 1").fetchall()
    assert dict(rows) == {201: 7, 409: 1}


def test_the_database_down_at_start_or_between_requests_is_a_503_and_heals(
    postgres, bundle_dir, api_key, key_header, people, tmp_path
) -> None:
    url = postgres.new_database()
    where = f"127.0.0.1:{postgres.port}"
    photo = people["Tony_Blair"][3]
    postgres.stop()
    try:
        with TestClient(create_app(_settings(bundle_dir, tmp_path / "state", api_key, url))) as client:
            ready = client.get("/ready", headers=key_header)
            assert ready.status_code == 503 and where in ready.json()["store"]["error"], ready.text
            refused = client.post("/v1/recognize", files={"image": ("q.jpg", photo.read_bytes())}, headers=key_header)
            assert refused.status_code == 503 and where in refused.json()["detail"], refused.text
            assert client.get("/health").status_code == 200
            postgres.start()
            wait_until(lambda: client.get("/ready", headers=key_header).status_code == 200, 30, "ready once back")
            enrolled = client.post(
                "/v1/identities",
                data={"identity": "Tony_Blair"},
                files=[("images", (p.name, p.read_bytes())) for p in people["Tony_Blair"][:2]],
                headers=key_header,
            )
            assert enrolled.status_code == 201, enrolled.text

            postgres.stop()  # between requests: every route that needs it says so, none fails with a 500
            for response in (
                client.post("/v1/recognize", files={"image": ("q.jpg", photo.read_bytes())}, headers=key_header),
                client.post(
                    "/v1/identities",
                    data={"identity": "Colin_Powell"},
                    files=[("images", ("c.jpg", people["Colin_Powell"][0].read_bytes()))],
                    headers=key_header,
                ),
                client.delete("/v1/identities/Tony_Blair", headers=key_header),
                client.post("/v1/feedback", json={"request_id": "x", "truth": "ann"}, headers=key_header),
            ):
                assert response.status_code == 503 and where in response.json()["detail"], response.text
            wait_until(lambda: client.get("/ready", headers=key_header).status_code == 503, 10, "not ready")
            postgres.start()
            back = wait_until(
                lambda: (
                    (r := client.post("/v1/recognize", files={"image": ("q.jpg", photo.read_bytes())}, headers=key_header)).status_code
                    == 200
                    and r
                ),
                30,
                "recognition once the database is back",
            )
            assert back.json()["faces"][0]["identity"] == "Tony_Blair"  # the acknowledged enrolment is there
            # /ready follows the background retry (every sync_seconds): wait for it, then look
            ready = wait_until(
                lambda: (r := client.get("/ready", headers=key_header)).status_code == 200 and r, 30, "ready again"
            )
            assert ready.json()["gallery"] == {"identities": 1, "embeddings": 2}
    finally:
        with contextlib.suppress(RuntimeError):  # already running
            postgres.start()  # for the other tests, whatever happened here
