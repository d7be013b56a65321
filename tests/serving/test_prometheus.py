"""The service as Prometheus sees it: a real Prometheus scrapes its metrics listener, the alert rules pass promtool's
checks and unit tests, and the Grafana dashboard only queries series the service exports.

Prometheus and promtool come from Debian's ``prometheus`` package (``make tools`` installs it; ``make test`` does
that first). Without them these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.serving.serving_helpers import LiveServer, free_port, make_settings, wait_until

OBSERVABILITY = Path(__file__).resolve().parents[2] / "infra" / "observability"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus package is not installed (make tools installs it)"
)


@pytest.fixture(scope="module")
def scraped(bundle_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory, no_face_jpeg: bytes):  # type: ignore[no-untyped-def]
    """The service with its metrics listener on 127.0.0.1, after one detect request."""
    from faceops.serving.app import create_app

    port = free_port()
    settings = make_settings(
        bundle_dir, tmp_path_factory.mktemp("prom-state"), api_key, metrics_port=port, metrics_host="127.0.0.1"
    )
    with LiveServer(create_app(settings)) as server:
        r = requests.post(
            f"{server.url}/v1/detect", files={"image": ("x.jpg", no_face_jpeg)}, headers={"X-API-Key": api_key}, timeout=120
        )
        assert r.status_code == 200, r.text
        yield server, f"http://127.0.0.1:{port}"


def test_the_metrics_listener_needs_no_key_and_serves_no_api(scraped) -> None:  # type: ignore[no-untyped-def]
    server, metrics_url = scraped
    text = requests.get(f"{metrics_url}/metrics", timeout=30).text
    assert 'faceops_requests_total{endpoint="detect",status="200"} 1.0' in text
    assert 'faceops_state_repairs{kind="gallery"} 0.0' in text
    assert requests.get(f"{server.url}/metrics", timeout=30).status_code == 401  # the API port keeps its key
    # The listener knows nothing but metrics: an API path there gets metrics text, never the API.
    assert "faceops_requests_total" in requests.get(f"{metrics_url}/v1/identities", timeout=30).text


@needs_prometheus
@pytest.mark.integration
def test_a_real_prometheus_scrapes_the_service(scraped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, metrics_url = scraped
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(_rules_file(tmp_path))],
                "scrape_configs": [
                    {"job_name": "faceops", "static_configs": [{"targets": [metrics_url.removeprefix("http://")]}]}
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def series(query: str) -> list[dict]:
            try:
                body = requests.get(f"{api}/query", params={"query": query}, timeout=10).json()
            except (requests.RequestException, ValueError):
                return []
            return body.get("data", {}).get("result", [])

        found = wait_until(
            lambda: series('faceops_requests_total{endpoint="detect"}'), 120, "Prometheus to scrape a FaceOps series"
        )
        assert found[0]["metric"]["job"] == "faceops" and float(found[0]["value"][1]) == 1.0
        assert float(series('up{job="faceops"}')[0]["value"][1]) == 1.0
        rules = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"FaceOpsHighErrorRate", "FaceOpsModelSourceDown"}
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules  # they evaluate against real data
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def _rules_file(where: Path) -> Path:
    """The rule groups of the PrometheusRule manifest as a plain Prometheus rules file."""
    manifest = yaml.safe_load((OBSERVABILITY / "prometheus-rule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    path = where / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    return path


@needs_prometheus
def test_the_alert_rules_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    rules = _rules_file(tmp_path)
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    names = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    shutil.copyfile(OBSERVABILITY / "rules_test.yaml", tmp_path / "rules_test.yaml")
    tested = set(re.findall(r"alertname: (\w+)", (tmp_path / "rules_test.yaml").read_text()))
    assert names == tested, f"alerts without a unit test: {names - tested}"
    run = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_dashboard_and_the_rules_query_only_exported_series(scraped) -> None:  # type: ignore[no-untyped-def]
    _, metrics_url = scraped
    text = requests.get(f"{metrics_url}/metrics", timeout=30).text
    # Sample names, and the declared names (a labelled counter with no sample yet, e.g. no recognition so far).
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("faceops_")}
    exported |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE faceops_")}
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((OBSERVABILITY / "prometheus-rule.yaml").read_text())["spec"]["groups"]
    queries += [r["expr"] for g in rules for r in g["rules"]]
    used = {name for q in queries for name in re.findall(r"faceops_[a-z0-9_]+", q)}
    assert used, "no FaceOps series queried"
    missing = sorted(used - exported)
    assert not missing, f"queried but not exported: {missing}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
