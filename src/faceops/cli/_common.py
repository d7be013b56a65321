"""Shared CLI plumbing: exit codes, error printing, progress bars, config loading."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tqdm import tqdm

from faceops.errors import FaceOpsError, InvalidImage, NoFaceDetected
from faceops.face.config import PreprocessConfig

if TYPE_CHECKING:
    from faceops.evaluation.bundle import ModelBundle

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_NO_FACE = 0, 1, 2, 3, 4
EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 other error; 2 usage error; 3 bad input (not a usable image); 4 no face detected."
)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, InvalidImage):
        return EXIT_BAD_INPUT
    if isinstance(exc, NoFaceDetected):
        return EXIT_NO_FACE
    return EXIT_ERROR


class FaceOpsGroup(click.Group):
    """A click group that turns FaceOps errors into one clear line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FaceOpsError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(exit_code_for(exc)) from exc


class Failures:
    """Collects per-input failures of a folder run, prints them at the end and gives the exit code."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Exception]] = []

    def add(self, source: str, exc: Exception) -> None:
        self.items.append((source, exc))

    def as_json(self) -> list[dict[str, str]]:
        return [{"input": s, "error": type(e).__name__, "message": str(e)} for s, e in self.items]

    def report(self) -> None:
        if self.items:
            click.echo(f"\n{len(self.items)} input(s) could not be used:", err=True)
            for _, exc in self.items:
                click.echo(f"  - {type(exc).__name__}: {exc}", err=True)

    def exit_code(self) -> int:
        codes = {exit_code_for(e) for _, e in self.items}
        for code in (EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_ERROR):
            if code in codes:
                return code
        return EXIT_OK


def progress(items: Iterable[Any] | None = None, total: int | None = None, desc: str = "") -> tqdm:
    """A progress bar on stderr (sparser when stderr is not a terminal, e.g. in CI logs)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        items, total=total, desc=desc, unit="img", file=sys.stderr, mininterval=0.5 if interactive else 15,
        dynamic_ncols=True, leave=True,
    )


def load_preprocess(path: Path | None) -> PreprocessConfig:
    """A preprocessing config from YAML, or the defaults (InceptionResnetV1's: the family training starts from)."""
    return PreprocessConfig.from_file(path) if path else PreprocessConfig()


def load_model(config_path: Path | None = None, model_uri: str | None = None,
               tracking_uri: str | None = None) -> ModelBundle:
    """The model a face command uses: ``--model`` (a bundle folder or ``models:/...``), else the pretrained
    InceptionResnetV1 with ``--config``'s preprocessing, else the default model (MobileFaceNet, see
    :mod:`faceops.face.presets`)."""
    from faceops.evaluation.bundle import ModelBundle

    if model_uri is not None and config_path is not None:
        raise click.UsageError("--model brings its own preprocessing: drop --config")
    if model_uri is not None:
        from faceops.registry import load_bundle

        return load_bundle(model_uri, tracking_uri)
    if config_path is not None:
        return ModelBundle.pretrained(preprocess=PreprocessConfig.from_file(config_path))
    return ModelBundle.default()


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Preprocessing config (YAML) for the pretrained InceptionResnetV1 (FACEOPS_WEIGHTS); default: the default "
    "model (MobileFaceNet, its own preprocessing).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
