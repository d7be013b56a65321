"""Serving commands: ``faceops serve`` (the HTTP service) and ``faceops watch`` (recognition on video).

The service lives in the top-level ``serving`` package (FastAPI); it is imported only when ``serve`` runs, so
the core never depends on the web stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceops.cli._common import echo_json, json_option, progress
from faceops.errors import ConfigError, FaceOpsError

__all__ = ["serve", "watch"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve a local model bundle folder (dev); default: the MLflow champion.",
)
@click.option("--mlflow-uri", help="MLflow tracking URI (or FACEOPS_SERVE_MLFLOW_URI).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Gallery and request log folder (or FACEOPS_SERVE_STATE_DIR).",
)
@click.option(
    "--api-keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File of accepted API key digests (or FACEOPS_SERVE_API_KEYS_FILE).",
)
@click.option(
    "--new-key",
    metavar="NAME",
    help="Create an API key named NAME, append its digest to --api-keys-file, print the key, and exit.",
)
@click.option("--allow-anonymous", is_flag=True, help="No API keys (local development only).")
@click.option(
    "--poll-seconds", type=click.FloatRange(min=0.1), help="How often to check the alias for a new model."
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="uvicorn processes."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Also serve /metrics without a key on this port, for Prometheus (keep it inside the cluster).",
)
def serve(
    host: str,
    port: int,
    bundle_dir: Path | None,
    mlflow_uri: str | None,
    state_dir: Path | None,
    api_keys_file: Path | None,
    new_key: str | None,
    allow_anonymous: bool,
    poll_seconds: float | None,
    workers: int,
    metrics_port: int | None,
) -> None:
    """Run the FaceOps HTTP service (OpenAPI docs at /docs, web page at /ui)."""
    from faceops.serving.security import hash_key, new_api_key

    if new_key:
        if api_keys_file is None:
            raise click.UsageError("--new-key needs --api-keys-file (where the key's digest is stored)")
        if ":" in new_key or not new_key.strip():
            raise click.UsageError("the key name must be non-empty and contain no ':'")
        key = new_api_key()
        api_keys_file.parent.mkdir(parents=True, exist_ok=True)
        with api_keys_file.open("a") as handle:
            handle.write(f"{new_key}:{hash_key(key)}\n")
        click.echo(key)
        click.echo(
            f"digest of key {new_key!r} appended to {api_keys_file}; the key itself is not stored: keep it",
            err=True,
        )
        return
    import os

    import uvicorn
    from pydantic import ValidationError

    from faceops.serving.config import ServingSettings

    overrides = {
        k: v
        for k, v in {
            "bundle_dir": bundle_dir,
            "mlflow_uri": mlflow_uri,
            "state_dir": state_dir,
            "api_keys_file": api_keys_file,
            "poll_seconds": poll_seconds,
            "metrics_port": metrics_port,
        }.items()
        if v is not None
    }
    if allow_anonymous:
        overrides["allow_anonymous"] = True
    if metrics_port and workers > 1:
        raise click.UsageError(
            "--metrics-port takes one process (each would bind the port): run one worker per pod and scale "
            "with replicas, or leave --metrics-port out and scrape /metrics with a key"
        )
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError("service settings: " + "; ".join(e["msg"] for e in exc.errors())) from exc
    from faceops.serving.app import create_app

    create_app(settings)  # fail here, with a clear message, on bad settings (e.g. no API keys)
    # uvicorn's worker processes rebuild the app from the environment through the factory.
    for name, value in settings.model_dump(exclude_unset=True).items():
        os.environ[f"FACEOPS_SERVE_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, list) else str(value)
        )
    uvicorn.run(
        "faceops.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        ws_max_size=settings.max_body_bytes,
    )


@click.command()
@click.option("--source", required=True, help="A webcam index (0) or a video file.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Annotated video to write (.mp4).",
)
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model bundle folder; default: the default model (MobileFaceNet, FACEOPS_MOBILEFACENET).",
)
@click.option("--model-uri", help="Or a registered model, e.g. models:/faceops@champion (MLflow).")
@click.option(
    "--gallery",
    "gallery_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gallery made by 'faceops enroll' with the same model.",
)
@click.option(
    "--known",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Or: a folder with one sub-folder of photos per identity, enrolled on the fly.",
)
@click.option("--max-frames", type=click.IntRange(1, None), help="Stop after this many frames.")
@click.option(
    "--every",
    type=click.IntRange(1, None),
    default=1,
    show_default=True,
    help="Process every N-th frame (the video keeps its frame rate).",
)
@json_option
def watch(
    source: str,
    out: Path,
    bundle_dir: Path | None,
    model_uri: str | None,
    gallery_path: Path | None,
    known: Path | None,
    max_frames: int | None,
    every: int,
    as_json: bool,
) -> None:
    """Recognise and track faces in a webcam or video file; write an annotated video."""
    from faceops.evaluation.bundle import ModelBundle
    from faceops.face.gallery import Gallery
    from faceops.face.video import VideoReader, annotate_video

    if gallery_path and known:
        raise click.UsageError("give --gallery or --known, not both")
    if bundle_dir and model_uri:
        raise click.UsageError("give --bundle or --model-uri, not both")
    if model_uri:
        import tempfile

        from faceops.registry import load_bundle

        with tempfile.TemporaryDirectory(prefix="faceops-model-") as tmp:
            bundle = load_bundle(model_uri, dst=tmp)  # weights are read into memory: the folder can go
    else:
        bundle = ModelBundle.load(bundle_dir) if bundle_dir else ModelBundle.default()
    recognizer = bundle.recognizer()
    gallery = None
    if gallery_path:
        gallery = Gallery.load(gallery_path)
        gallery.check_model(recognizer.model_id)
    elif known:
        from faceops.face.enrol import enrol

        gallery = Gallery(recognizer.model_id)
        enrol(recognizer, gallery, known)
        if not len(gallery):
            raise FaceOpsError(f"no face found in the photos under {known}")
    with VideoReader(source, every, max_frames) as video:
        bar = progress(total=video.frames_to_process, desc="watch")
        summary = annotate_video(video, out, recognizer, gallery, bundle.threshold, on_frame=lambda _: bar.update(1))
        bar.close()
    if as_json:
        echo_json(summary.to_dict())
    else:
        click.echo(
            f"{summary.frames} frames, {summary.faces} faces in {len(summary.tracks)} tracks at "
            f"{summary.fps_processed:.2f} frames/s; annotated video: {out}"
        )
