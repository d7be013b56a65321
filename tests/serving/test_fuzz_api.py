"""Fuzzing the HTTP API from its own OpenAPI schema with schemathesis: no 5xx, no dropped connection, ever.

Every operation of ``/openapi.json`` gets cases built from the schema: bodies (multipart and base64 JSON) and
parameters that follow it and that break it (schemathesis' positive and negative modes); every image field is
filled from the image fuzzer's strategy (real encodings of random size, mode and damage; garbage). Each case is
sent to the real app under uvicorn on 127.0.0.1, over one kept-alive connection, twice: with a valid API key and
without one. The invariant: no 5xx, no dropped or reset connection, no success without a key on a protected route,
and ``/health`` answers 200 after every case. Separately, every answer is checked against the schema (declared
status codes, content types, response bodies): that is what makes the schema precise enough to fuzz from.

A bounded, seeded run is part of ``make test``. ``make fuzz`` raises ``FUZZ_EXAMPLES`` (cases per operation),
may change ``FUZZ_SEED``, and sets ``FUZZ_REPORT``: the figures (cases, failures and schema mismatches per
operation) go there (``benchmarks/results/fuzz.json``).
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.face.test_fuzz_images import FUZZ_EXAMPLES, FUZZ_SEED, encoded_images, merge_report
from tests.serving.serving_helpers import LiveServer, make_settings

pytestmark = pytest.mark.fuzz

BOUNDED_EXAMPLES = 25  # cases per operation in make test (each sent twice, then /health)
PUBLIC = {"GET /health", "GET /ready"}  # the probes: they answer without a key (/ready says less without one)
TIMEOUT_S = 120.0  # one case; a busy machine runs MTCNN on a 1600 px image in seconds, not minutes

FIGURES: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
FAILURES: dict[str, list[str]] = defaultdict(list)  # operation -> what broke the invariant (first few)
MISMATCHES: dict[str, dict[str, str]] = defaultdict(dict)  # operation -> schema mismatch -> a case showing it


@pytest.fixture(scope="module")
def fuzz_server(bundle_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The service under a real uvicorn (a dropped connection shows), with no rate limit to slow the fuzzer and no
    throttling of failed keys (schemathesis fills the declared key schemes with made-up keys)."""
    from faceops.serving.app import create_app

    settings_ = make_settings(
        bundle_dir, tmp_path_factory.mktemp("fuzz-state"), api_key, max_body_bytes=2 * 1024 * 1024,
        rate_limit_per_minute=0, auth_failures_per_minute=0,
    )
    with LiveServer(create_app(settings_)) as server:
        yield server


@pytest.fixture(scope="module")
def session() -> requests.Session:
    """One kept-alive connection for every case: uvicorn resets it after an unhandled exception."""
    with requests.Session() as s:
        yield s


def _openapi() -> dict:
    """The app's OpenAPI document; building the app loads nothing (the model comes in the lifespan)."""
    from faceops.serving.app import create_app
    from faceops.serving.config import ServingSettings

    return create_app(ServingSettings(bundle_dir=Path("not-loaded"), allow_anonymous=True)).openapi()


# Image fields (OpenAPI `binary` in multipart, `byte` in JSON) come from the image fuzzer's strategy. The schema is
# loaded here rather than from a fixture: schemathesis' fixture loader (`from_fixture`) fails under pytest 9.
_images = encoded_images()
schemathesis.openapi.format("binary", _images)
schemathesis.openapi.format("byte", _images.map(lambda data: base64.b64encode(data).decode()))
schema = schemathesis.openapi.from_dict(_openapi())


def _send(case: schemathesis.Case, base_url: str, session: requests.Session, headers: dict[str, str]) -> requests.Response:
    try:
        return case.call(base_url=base_url, session=session, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:  # reset, refused, or no answer within TIMEOUT_S
        raise AssertionError(f"{case.operation.label}: no answer ({exc})\n{case.as_curl_command()}") from exc


def _record(label: str, what: str, case: schemathesis.Case) -> None:
    FIGURES[label]["failures"] += 1
    if len(FAILURES[label]) < 5:
        FAILURES[label].append(f"{what}: {case.as_curl_command()[:600]}")


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES or BOUNDED_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@seed(FUZZ_SEED)
def test_no_server_error_no_dropped_connection(case, fuzz_server, session, api_key) -> None:  # type: ignore[no-untyped-def]
    label = case.operation.label
    FIGURES[label]["cases"] += 1
    for keyed in (True, False):
        headers = {"X-API-Key": api_key} if keyed else {}
        try:
            response = _send(case, fuzz_server.url, session, headers)
        except AssertionError as exc:
            _record(label, f"no answer ({type(exc.__cause__).__name__})", case)
            raise
        FIGURES[label][f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            _record(label, f"{response.status_code} ({'with' if keyed else 'without'} key)", case)
            pytest.fail(f"{label} answered {response.status_code}: {response.text[:300]}\n{case.as_curl_command()}")
        try:
            case.validate_response(
                response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
            )
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else (exc,):
                detail = failure.message.strip().splitlines()[0][:160] if failure.message else ""
                what = f"{response.status_code} {'with' if keyed else 'without'} key: {failure.title}: {detail}"
                MISMATCHES[label].setdefault(what, case.as_curl_command()[:600])
        if not keyed and label not in PUBLIC:
            # The key is checked before the body, the query and the path parameters are read: 401, unless the
            # request is refused before any route runs (a method or path no route has: 405 / 404; a body over the
            # size limit, cut off while it streams in: 413).
            assert response.status_code in (401, 404, 405, 413), f"{label} without a key answered {response.status_code}"
            FIGURES[label][f"no key: {response.status_code}"] += 1
        health = requests.get(f"{fuzz_server.url}/health", timeout=30)
        assert health.status_code == 200, f"/health answered {health.status_code} after {label}"


# Inputs the fuzzers found that once broke the invariant, replayed on every run whatever the generator draws.
TIFF_IFD_PAST_END = b"II*\x00\x00\x00\x00\x01"  # PIL's TIFF reader warns "Corrupt EXIF data" (a 500 under -W error)


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/v1/detect", ["image"]), ("/v1/recognize", ["image"]), ("/v1/verify", ["a", "b"]), ("/v1/identities", ["images"])],
)
def test_fuzz_findings_are_client_errors(fuzz_server: LiveServer, session: requests.Session, api_key: str,
                                         path: str, fields: list[str]) -> None:
    files = [(field, ("x.tif", TIFF_IFD_PAST_END, "image/tiff")) for field in fields]
    data = {"identity": "fuzz finding"} if path == "/v1/identities" else None
    response = session.post(f"{fuzz_server.url}{path}", files=files, data=data, headers={"X-API-Key": api_key}, timeout=60)
    assert 400 <= response.status_code < 500, f"{path}: {response.status_code} {response.text[:200]}"


def test_every_operation_was_fuzzed(fuzz_server: LiveServer, api_key: str) -> None:
    """The fuzz test above reached every operation of the schema the service serves (no silent skip)."""
    served = requests.get(f"{fuzz_server.url}/openapi.json", headers={"X-API-Key": api_key}, timeout=60)
    assert served.status_code == 200 and served.json() == schema.raw_schema, "the served schema is not the one fuzzed"
    operations = {op.ok().label for op in schema.get_all_operations()}
    assert operations, "the schema has no operations"
    missing = sorted(op for op in operations if FIGURES[op]["cases"] == 0)
    assert not missing, f"operations never fuzzed: {missing}"


def test_answers_match_the_schema() -> None:
    """Every answer the fuzzer saw is one the schema declares (status code, content type, body)."""
    assert FIGURES, "the fuzz test did not run"
    mismatches = {op: found for op, found in MISMATCHES.items() if found}
    assert not mismatches, "answers the OpenAPI schema does not describe:\n" + json.dumps(mismatches, indent=1)


def teardown_module() -> None:
    if not FIGURES:
        return
    merge_report(
        "api",
        {
            "examples_per_operation": FUZZ_EXAMPLES or BOUNDED_EXAMPLES,
            "schemathesis": schemathesis.__version__,
            "requests_per_case": "2 (with and without a key) + GET /health",
            "operations": {op: dict(counts) for op, counts in sorted(FIGURES.items())},
            "cases": sum(c["cases"] for c in FIGURES.values()),
            "failures": sum(c["failures"] for c in FIGURES.values()),
            "failure_examples": {op: found for op, found in sorted(FAILURES.items())},
            "schema_mismatches": {op: found for op, found in sorted(MISMATCHES.items())},
        },
    )
