"""The web page in headless Chromium against a real uvicorn server: upload a photo and see the boxes and
names; start the (fake, file-fed) webcam and see tracked faces stream back over the WebSocket (the key goes in
its first message). Every page (/ui, /docs, /redoc) works under the service's Content-Security-Policy: the
browser reports no violation."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from faceops.serving.app import create_app

from tests.serving.cdp import CHROMIUM, Browser
from tests.serving.serving_helpers import LiveServer, make_settings, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def server(bundle_dir, api_key, tmp_path_factory, people, datasets):  # type: ignore[no-untyped-def]
    settings = make_settings(bundle_dir, tmp_path_factory.mktemp("web-state"), api_key)
    with LiveServer(create_app(settings)) as live:
        headers = {"X-API-Key": api_key}
        enrol = {
            "Colin_Powell": people["Colin_Powell"][:2],
            "lin_manuel_miranda": [datasets / "video/known_faces/lin_manuel_miranda/lin-manuel-miranda.png"],
        }
        for name, photos in enrol.items():
            r = requests.post(
                f"{live.url}/v1/identities",
                headers=headers,
                timeout=120,
                data={"identity": name},
                files=[("images", (p.name, p.read_bytes())) for p in photos],
            )
            assert r.status_code == 201, r.text
        yield live


def _y4m(video: Path, out: Path, frames: int = 12) -> Path:
    """The clip's first frames as a Y4M file, which Chromium's fake webcam plays in a loop."""
    capture = cv2.VideoCapture(str(video))
    chunks = []
    for _ in range(frames):
        ok, bgr = capture.read()
        assert ok
        chunks.append(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    capture.release()
    h, w = bgr.shape[:2]
    out.write_bytes(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode() + b"".join(chunks))
    return out


def _watch_csp(browser: Browser) -> None:
    """Collect the page's Content-Security-Policy violations in ``window.__csp`` (installed before any script)."""
    browser.send("Page.enable")  # needed for scripts on new documents
    browser.send(
        "Page.addScriptToEvaluateOnNewDocument",
        source="window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));",
    )


def _set_key(browser: Browser, key: str) -> None:
    browser.eval(
        f"(() => {{ const k = document.getElementById('api-key'); k.value = {key!r};"
        "k.dispatchEvent(new Event('change')); })()"
    )


def test_upload_a_photo_and_see_names(server, api_key, people, tmp_path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        _watch_csp(browser)
        browser.goto(f"{server.url}/ui")
        _set_key(browser, api_key)
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", nodeId=root, selector="#photo")["nodeId"]
        browser.send("DOM.setFileInputFiles", nodeId=node, files=[str(people["Colin_Powell"][3])])
        wait_until(
            lambda: browser.eval("document.body.dataset.done") == "photo", 120, "the page to draw the result"
        )
        names = browser.eval("[...document.querySelectorAll('#faces li')].map(li => li.dataset.identity)")
        assert "Colin_Powell" in names, (names, browser.eval("document.getElementById('status').textContent"))
        status = browser.eval("document.getElementById('status').textContent")
        assert "face(s)" in status and "model local-" in status
        # the box is drawn on the canvas in the "known" green
        green = browser.eval(
            "(() => { const c = document.getElementById('canvas'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 0; i < d.length; i += 4) if (d[i] < 80 && d[i+1] > 100 && d[i+2] < 80) n++;"
            "return n; })()"
        )
        assert green > 100
        shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
        image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 100
        (tmp_path / "page.png").write_bytes(shot)
        assert browser.eval("window.__csp") == []
    finally:
        browser.close()


def test_wrong_key_shows_an_error(server, people, tmp_path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(f"{server.url}/ui")
        _set_key(browser, "fo_wrong")
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", nodeId=root, selector="#photo")["nodeId"]
        browser.send("DOM.setFileInputFiles", nodeId=node, files=[str(people["Colin_Powell"][3])])
        status = wait_until(
            lambda: "Error" in (s := browser.eval("document.getElementById('status').textContent")) and s,
            60,
            "the error message",
        )
        assert "401" in status and "API key" in status
    finally:
        browser.close()


def test_webcam_streams_tracked_faces(server, api_key, datasets, tmp_path) -> None:
    y4m = _y4m(datasets / "video" / "short_hamilton_clip.mp4", tmp_path / "cam.y4m")
    browser = Browser(
        tmp_path / "profile",
        [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}",
        ],
    )
    try:
        _watch_csp(browser)
        browser.goto(f"{server.url}/ui")
        _set_key(browser, api_key)
        browser.eval("document.getElementById('webcam').click()")
        wait_until(
            lambda: int(browser.eval("document.body.dataset.frames || '0'")) >= 3, 180, "3 streamed frames"
        )
        labels = browser.eval("[...document.querySelectorAll('#faces li')].map(li => li.textContent)")
        assert labels and all(label.startswith("#") for label in labels), labels  # track ids are shown
        assert browser.eval("window.__csp") == []  # the WebSocket and the webcam's video pass the policy
        browser.eval("document.getElementById('stop').click()")
    finally:
        browser.close()


def test_api_docs_render_offline(server, tmp_path) -> None:
    # Every host but the service's is unresolvable: a page that still needed a CDN would stay blank.
    browser = Browser(tmp_path / "profile", ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
    try:
        _watch_csp(browser)
        browser.goto(f"{server.url}/docs")
        count = wait_until(
            lambda: browser.eval("document.querySelectorAll('.opblock').length") or None, 120, "the operations"
        )
        paths = browser.eval("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)")
        assert count >= 5 and any("/v1/recognize" in p for p in paths), paths
        loaded = browser.eval("performance.getEntriesByType('resource').map(e => e.name)")
        assert any(name.endswith("swagger-ui-bundle.js") for name in loaded), loaded
        assert all(name.startswith(server.url) for name in loaded), loaded
        assert browser.eval("window.__csp") == []  # Swagger UI's inline start-up script is allowed by its hash
        browser.goto(f"{server.url}/redoc")
        wait_until(
            lambda: "/v1/recognize" in (browser.eval("document.body.innerText") or ""), 120, "ReDoc to render"
        )
        # ReDoc's own scripts, styles and search worker pass; only its footer logo from its CDN is blocked (on
        # purpose: the page never calls out)
        assert browser.eval("window.__csp") == ["img-src https://cdn.redoc.ly/redoc/logo-mini.svg"]
    finally:
        browser.close()
