"""Face-core commands: detect, enroll, recognize, verify."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from faceops.cli._common import (
    EXIT_NO_FACE,
    Failures,
    config_option,
    echo_json,
    json_option,
    load_model,
    load_preprocess,
    progress,
)
from faceops.errors import FaceOpsError, InvalidImage
from faceops.face.gallery import Gallery
from faceops.face.images import iter_image_paths, load_image
from faceops.face.presets import default_model_preprocess
from faceops.face.recognizer import FaceRecognizer
from faceops.face.render import save_annotated

threshold_option = click.option(
    "--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
    help="Cosine similarity at or above which two faces are the same person; default: the model's calibrated "
    "threshold (0.304 for the default model, FAR 1e-3 on LFW).",
)
model_option = click.option(
    "--model", "model_uri", default=None,
    help="The model: a bundle folder or models:/faceops@champion (its preprocessing and threshold); default: "
    "the default model (MobileFaceNet), or the pretrained InceptionResnetV1 with --config.",
)
tracking_option = click.option("--tracking-uri", default=None, help="MLflow tracking URI for --model models:/...")
inputs_argument = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))


def _exit(code: int) -> None:
    if code:
        raise click.exceptions.Exit(code)


@click.command()
@inputs_argument
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for annotated images and one JSON per image.")
@click.option("--min-face-size", type=click.IntRange(8, None), help="Override the config's minimum face size.")
@config_option
@json_option
def detect(inputs: tuple[Path, ...], out: Path, min_face_size: int | None, config_path: Path | None,
           as_json: bool) -> None:
    """Detect every face in IMAGES or folders: boxes, landmarks and probabilities (the default model's detector, or
    --config's)."""
    config = load_preprocess(config_path) if config_path else default_model_preprocess()
    if min_face_size:
        config = config.model_copy(update={"detector": config.detector.model_copy(update={"min_face_size": min_face_size})})
    recognizer = FaceRecognizer(config)
    paths = list(iter_image_paths(inputs))
    failures, results, no_face = Failures(), [], 0
    out.mkdir(parents=True, exist_ok=True)
    for path in progress(paths, desc="detect"):
        try:
            image = load_image(path)
        except InvalidImage as exc:
            failures.add(str(path), exc)
            continue
        faces = recognizer.detector.detect(image)
        no_face += not faces
        stem = _unique_stem(path, out)
        annotated = save_annotated(out / f"{stem}.jpg", image, faces)
        record = {"image": str(path), "width": image.shape[1], "height": image.shape[0],
                  "faces": [f.to_dict() for f in faces], "annotated": str(annotated)}
        (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
        results.append(record)
    if as_json:
        echo_json({"results": results, "failures": failures.as_json()})
    else:
        for r in results:
            click.echo(f"{r['image']}: {len(r['faces'])} face(s)")
        click.echo(f"annotated images and JSON written to {out}")
    failures.report()
    _exit(failures.exit_code() or (EXIT_NO_FACE if no_face else 0))


def _unique_stem(path: Path, out: Path) -> str:
    stem = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
    candidate, n = stem, 1
    while (out / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gallery", "gallery_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Gallery file (.npz); created if missing, added to if present.")
@model_option
@tracking_option
@config_option
@json_option
def enroll(folder: Path, gallery_path: Path, model_uri: str | None, tracking_uri: str | None,
           config_path: Path | None, as_json: bool) -> None:
    """Enroll FOLDER (one sub-folder of photos per identity) into a gallery."""
    from faceops.errors import DatasetError
    from faceops.face.enrol import enrol, people_in_folder

    try:
        people = people_in_folder(folder)
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from exc
    recognizer = load_model(config_path, model_uri, tracking_uri).recognizer()
    gallery = Gallery.open_or_create(gallery_path, recognizer.model_id)
    with progress(total=len(people), desc="enroll") as bar:
        done = enrol(recognizer, gallery, people, progress=bar.update)  # photos already held are skipped
    failures, added = Failures(), done.added
    for rejected in done.rejected:
        failures.add(rejected.name, rejected.error)
    gallery.save(gallery_path)
    summary = {"gallery": str(gallery_path), "added": added, "identities": gallery.identities,
               "failures": failures.as_json()}
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"enrolled {sum(added.values())} photo(s) of {len(added)} identit(ies) into {gallery_path}; "
                   f"gallery now holds {len(gallery.identities)} identities, {len(gallery)} embeddings")
    failures.report()
    _exit(failures.exit_code())


@click.command()
@inputs_argument
@click.option("--gallery", "gallery_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Gallery file made by 'faceops enroll'.")
@threshold_option
@click.option("--top-k", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also write annotated images here.")
@model_option
@tracking_option
@config_option
@json_option
def recognize(inputs: tuple[Path, ...], gallery_path: Path, threshold: float | None, top_k: int, out: Path | None,
              model_uri: str | None, tracking_uri: str | None, config_path: Path | None, as_json: bool) -> None:
    """Identify every face in IMAGES or folders against a gallery ('unknown' below the threshold); use the model
    the gallery was enrolled with (--model / --config)."""
    bundle = load_model(config_path, model_uri, tracking_uri)
    recognizer = bundle.recognizer()
    threshold = bundle.threshold if threshold is None else threshold
    gallery = Gallery.load(gallery_path)
    gallery.check_model(recognizer.model_id)
    failures, results, no_face = Failures(), [], 0
    for path in progress(list(iter_image_paths(inputs)), desc="recognize"):
        try:
            image, found = recognizer.analyze(path)
        except InvalidImage as exc:
            failures.add(str(path), exc)
            continue
        no_face += not found
        matches = gallery.identify([f.embedding for f in found], threshold, top_k) if found else []
        faces = [{**f.face.to_dict(), **m.to_dict()} for f, m in zip(found, matches, strict=True)]
        record: dict[str, object] = {"image": str(path), "faces": faces}
        if out:
            record["annotated"] = str(save_annotated(out / f"{_unique_stem(path, out)}.jpg", image,
                                                     [f.face for f in found], [m.identity for m in matches]))
        results.append(record)
    if as_json:
        echo_json({"threshold": threshold, "results": results, "failures": failures.as_json()})
    else:
        for r in results:
            faces_of: list[dict[str, Any]] = r["faces"]  # type: ignore[assignment]
            names = ", ".join(f"{f['identity']} ({f['score']:.3f})" for f in faces_of) or "no face"
            click.echo(f"{r['image']}: {names}")
    failures.report()
    _exit(failures.exit_code() or (EXIT_NO_FACE if no_face else 0))


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--pairs", "pairs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pairs file (LFW pairs.txt format, or CSV) for a protocol run.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Image root of the pairs file (default: the pairs file's folder).")
@click.option("--folds", type=str, help="Only these folds, e.g. '1,2'.")
@click.option("--no-face", type=click.Choice(["reject", "center"]), default="reject", show_default=True,
              help="Images without a detected face: 'reject' scores their pairs -1 (judged different); "
                   "'center' embeds the centre of the photo.")
@click.option("--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), help="Save a ROC plot (PNG).")
@click.option("--scores-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save each pair's score (CSV: a, b, same, fold, score) for calibration or plots.")
@model_option
@tracking_option
@threshold_option
@config_option
@json_option
def verify(images: tuple[Path, ...], pairs_path: Path | None, root: Path | None, folds: str | None, no_face: str,
           roc_path: Path | None, scores_out: Path | None, model_uri: str | None, tracking_uri: str | None,
           threshold: float | None, config_path: Path | None, as_json: bool) -> None:
    """Verify two photos (A B), or run the LFW protocol on a pairs file (--pairs); --model compares variants."""
    from faceops.face.verification import score_pairs, verify_images

    bundle = load_model(config_path, model_uri, tracking_uri)
    make_recognizer: Callable[[], FaceRecognizer] = bundle.recognizer
    threshold = bundle.threshold if threshold is None else threshold
    if pairs_path is None:
        if len(images) != 2:
            raise click.UsageError("give two images (A B), or --pairs FILE")
        recognizer = make_recognizer()
        similarity = verify_images(recognizer, images[0], images[1])
        payload = {"a": str(images[0]), "b": str(images[1]), "similarity": round(similarity, 6),
                   "threshold": threshold, "same": similarity >= threshold}
        if as_json:
            echo_json(payload)
        else:
            verdict = "same person" if payload["same"] else "different people"
            click.echo(f"similarity {similarity:.4f} (threshold {threshold:.4f}): {verdict}")
        return
    if images:
        raise click.UsageError("give either two images or --pairs, not both")
    from faceops.evaluation.pairs import read_pairs

    fold_list = [int(f) for f in folds.split(",")] if folds else None
    pairs = read_pairs(pairs_path, root or pairs_path.parent, fold_list)
    recognizer = make_recognizer()
    n_images = len({p.a for p in pairs} | {p.b for p in pairs})
    with progress(total=n_images, desc="embed") as bar:
        scored = score_pairs(recognizer, pairs, no_face=no_face, progress=bar.update)  # type: ignore[arg-type]
    from faceops.evaluation.metrics import verification_report

    report = verification_report(scored.scores, scored.labels, scored.folds, threshold=threshold)
    if roc_path:
        from faceops.evaluation.plots import plot_roc

        plot_roc(scored.scores, scored.labels, roc_path)
    if scores_out:
        _write_scores(scores_out, pairs, scored.scores)
    payload = {**report.to_dict(), "no_face_images": len(scored.no_face), "no_face_policy": no_face,
               "unreadable_images": scored.unreadable, "images": n_images}
    if as_json:
        echo_json(payload)
    else:
        click.echo(_report_table(payload))
    if scored.unreadable:
        raise FaceOpsError(f"{len(scored.unreadable)} image(s) of the pairs could not be read: "
                           f"{', '.join(list(scored.unreadable)[:5])}")


def _write_scores(path: Path, pairs: list, scores) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "same", "fold", "score"])
        for pair, score in zip(pairs, scores, strict=True):
            writer.writerow([pair.a, pair.b, int(pair.same), pair.fold, f"{score:.6f}"])


def _report_table(r: dict) -> str:
    rows = [("pairs", f"{r['pairs']} ({r['genuine']} genuine, {r['impostors']} impostor)"),
            ("images", f"{r['images']} ({r['no_face_images']} without a detected face: {r['no_face_policy']})")]
    if r.get("accuracy_mean") is not None:
        rows.append(("accuracy", f"{100 * r['accuracy_mean']:.2f}% ± {100 * r['accuracy_std']:.2f} "
                                 f"over {len(r['fold_accuracies'])} folds (threshold chosen on the other folds)"))
    at = f"threshold {r['threshold']:.4f}"  # the model's: a single fold has no other fold to choose one on
    if r.get("accuracy_mean") is None:
        rows.append(("accuracy", f"{100 * r['accuracy_at_threshold']:.2f}% ({at})"))
    else:
        rows.append((f"accuracy @ {at}", f"{100 * r['accuracy_at_threshold']:.2f}%"))
    rows.append(("FAR / FRR", f"{100 * r['far_at_threshold']:.2f}% / {100 * r['frr_at_threshold']:.2f}% ({at})"))
    rows += [("ROC AUC", f"{r['auc']:.4f}"), ("EER", f"{100 * r['eer']:.2f}% (threshold {r['eer_threshold']:.4f})")]
    for far, tar in r["tar_at_far"].items():
        rows.append((f"TAR @ FAR={far}", f"{100 * tar:.2f}% (threshold {r['threshold_at_far'][far]:.4f})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
