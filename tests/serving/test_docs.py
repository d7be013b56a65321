"""The API docs (/docs, /redoc) work offline: their pages load every script and style from the service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.serving.serving_helpers import make_settings

_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory: pytest.TempPathFactory, api_key: str):  # type: ignore[no-untyped-def]
    """The app without its lifespan: the docs need no model."""
    from faceops.serving.app import create_app
    from fastapi.testclient import TestClient

    state = tmp_path_factory.mktemp("docs-state")
    client = TestClient(create_app(make_settings(state, state, api_key)))
    yield client
    client.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_assets(docs_client, page: str) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), "the page links to another host"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets), assets  # the UI's script is among them
    for asset in assets:
        assert asset.startswith("/"), asset
        got = docs_client.get(asset)
        assert got.status_code == 200, asset
        kind = got.headers["content-type"].split(";")[0]
        assert kind in _TYPES[Path(asset).suffix], (asset, kind)
        assert len(got.content) > 1000, asset  # the real asset, not a stub
    spec = re.search(r"""(?:url: '|spec-url=")(/[^'"]+)""", html)
    assert spec is not None and docs_client.get(spec.group(1)).json()["info"]["title"] == "FaceOps"
