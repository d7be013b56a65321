"""The dev overlay's database Job, run for real: its script, with the environment the rendered Job gives it, against
a PostgreSQL server on 127.0.0.1 (tests/serving/pg_server.py) in place of the overlay's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import checks
from tests.infra.conftest import Rendered

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    from tests.serving.pg_server import running_server

    with running_server() as pg:
        yield pg


def _run(r: Rendered, tmp_path: Path, port: int, user: str, admin: str) -> subprocess.CompletedProcess[str]:
    """The Job's script from its ConfigMap, with its Secrets' values, pointed at the local server: the URL's host,
    port and user replaced (the test server's own superuser is called faceops), ``admin`` as the superuser."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    spec = checks.pod_spec(r.get("Job", "faceops-create-database"))
    assert spec is not None
    container = spec["containers"][0]
    env = {}
    for var in container["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        secret = next(n for n in r.names("Secret") if n == ref["name"] or n.startswith(ref["name"] + "-"))
        env[var["name"]] = checks.decoded(r.get("Secret", secret))[ref["key"]]
    mount = container["volumeMounts"][0]
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == mount["name"])
    for name, text in r.get("ConfigMap", config_map)["data"].items():
        (tmp_path / name).write_text(text)
    assert container["args"] == ["python", f"{mount['mountPath']}/create_database.py"]
    url = conninfo_to_dict(env[checks.DATABASE_ENV])
    env[checks.DATABASE_ENV] = make_conninfo(**{**url, "host": "127.0.0.1", "port": str(port), "user": user})
    env.update(POSTGRES_USER=admin, POSTGRES_DB="postgres")
    return subprocess.run(
        [sys.executable, str(tmp_path / "create_database.py")], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_the_job_creates_the_serving_database_and_its_own_user_once(rendered: dict[str, Rendered], server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    r = rendered["overlays/dev"]
    refused = _run(r, tmp_path, server.port, "faceops", "faceops")
    assert refused.returncode != 0 and "must not be MLflow's" in refused.stderr, refused.stderr
    first = _run(r, tmp_path, server.port, "serving", "faceops")
    assert first.returncode == 0, first.stderr
    assert "user serving created" in first.stdout and "database faceops created" in first.stdout, first.stdout
    again = _run(r, tmp_path, server.port, "serving", "faceops")
    assert again.returncode == 0, again.stderr
    assert "user serving updated" in again.stdout and "database faceops exists" in again.stdout, again.stdout
    with psycopg.connect(server.url(), autocommit=True) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'faceops'").fetchone()
        role = conn.execute(
            "SELECT rolsuper, rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'serving'"
        ).fetchone()
    assert owner == ("serving",)
    assert role == (False, True, True)
    down = _run(r, tmp_path, 1, "serving", "faceops")  # nothing listens on port 1: the Job fails and retries
    assert down.returncode != 0 and "cannot reach PostgreSQL at 127.0.0.1:1" in down.stderr, down.stderr
