"""``faceops serve``: key creation stores only a digest; bad settings stop it with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from faceops.serving.security import ApiKeys, hash_key

from faceops.cli import cli


def test_new_key_stores_only_its_digest(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    result = CliRunner().invoke(cli, ["serve", "--new-key", "alice", "--api-keys-file", str(keys)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("fo_") and len(key) > 40
    assert keys.read_text() == f"alice:{hash_key(key)}\n" and key not in keys.read_text()
    accepted = ApiKeys.from_settings([], keys, allow_anonymous=False)
    assert accepted.check(key) == "alice"
    assert accepted.check(key + "x") is None and accepted.check(None) is None


def test_serve_refuses_to_start_without_keys_or_with_two_sources(tmp_path: Path, bundle_dir: Path) -> None:
    no_keys = CliRunner().invoke(cli, ["serve", "--bundle", str(bundle_dir), "--state-dir", str(tmp_path)])
    assert no_keys.exit_code != 0 and "no API keys configured" in (no_keys.output + str(no_keys.exception))
    both = CliRunner().invoke(
        cli, ["serve", "--bundle", str(bundle_dir), "--mlflow-uri", "http://127.0.0.1:1", "--allow-anonymous"]
    )
    assert both.exit_code != 0 and "only one of" in (both.output + str(both.exception))


def test_serving_is_importable_from_anywhere(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import faceops.serving.app as app; print(app.STATIC)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (Path(out.stdout.strip()) / "index.html").is_file()
