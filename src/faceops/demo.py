"""The face-core demo behind ``make run``: enrol a few LFW people, recognise new photos of them and of strangers.

    python -m faceops.demo --shared ../shared --out outputs/demo

Writes annotated images (green: recognised, red: unknown), the gallery and a ``summary.json``, and prints where.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from faceops.evaluation.bundle import ModelBundle
from faceops.face.enrol import enrol
from faceops.face.gallery import UNKNOWN, Gallery
from faceops.face.images import iter_image_paths
from faceops.face.render import save_annotated

# Well-photographed LFW people (>= 10 photos each) and strangers who are never enrolled.
KNOWN = ["Colin_Powell", "Serena_Williams", "Gerhard_Schroeder", "Hugo_Chavez", "Angelina_Jolie"]
STRANGERS = ["Jennifer_Aniston", "Tiger_Woods", "Vladimir_Putin", "Lleyton_Hewitt", "Jean_Chretien"]
ENROL_PER_PERSON, PROBES_PER_PERSON = 5, 2


def run_demo(shared: Path, out: Path, threshold: float | None = None) -> dict[str, Any]:
    """Run the demo with the default model (its threshold unless ``threshold``) and return its summary (also
    written to ``out/summary.json``)."""
    lfw = shared / "datasets" / "lfw"
    if not lfw.is_dir():
        raise SystemExit(f"LFW not found at {lfw}: pass --shared with the path of the shared folder")
    started = time.time()
    bundle = ModelBundle.default()
    recognizer = bundle.recognizer()
    threshold = bundle.threshold if threshold is None else threshold
    gallery = Gallery(recognizer.model_id)
    out.mkdir(parents=True, exist_ok=True)
    photos, probes = [], []
    missing = [n for n in KNOWN + STRANGERS if not (lfw / n).is_dir()]
    if missing:
        raise SystemExit(f"the demo's people are missing from {lfw}: {', '.join(missing)}")
    for name in KNOWN:
        mine = list(iter_image_paths([lfw / name]))
        photos += [(name, p) for p in mine[:ENROL_PER_PERSON]]
        probes += [(name, p) for p in mine[ENROL_PER_PERSON : ENROL_PER_PERSON + PROBES_PER_PERSON]]
    for name in STRANGERS:
        probes += [(UNKNOWN, p) for p in list(iter_image_paths([lfw / name]))[:1]]

    with tqdm(total=len(photos), desc="enrol", unit="img") as bar:
        enrol(recognizer, gallery, photos, progress=bar.update)  # photos without a face are left out
    gallery.save(out / "gallery.npz")

    rows, correct = [], 0
    for truth, path in tqdm(probes, desc="recognise", unit="img"):
        image, found = recognizer.analyze(path)
        matches = gallery.identify([f.embedding for f in found], threshold) if found else []
        annotated = save_annotated(out / f"{path.stem}.jpg", image, [f.face for f in found],
                                   [m.identity for m in matches])
        # The subject of an LFW photo is the face nearest the centre; others are bystanders.
        subject = _subject_index(found, image.shape)
        answer = matches[subject] if subject is not None else None
        predicted = answer.identity if answer else "no face"
        correct += predicted == truth
        rows.append({"image": str(path), "truth": truth, "predicted": predicted,
                     "score": round(answer.score, 4) if answer else None, "annotated": str(annotated)})
    summary = {
        "enrolled": gallery.identities, "threshold": threshold, "probes": len(rows), "correct": correct,
        "accuracy": correct / len(rows), "seconds": round(time.time() - started, 1), "results": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _subject_index(found: list, shape: tuple[int, ...]) -> int | None:
    from faceops.face.detection import select_subject

    face = select_subject([f.face for f in found], shape, "center_weighted")
    return None if face is None else next(i for i, f in enumerate(found) if f.face is face)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--threshold", type=float, default=None, help="default: the default model's")
    args = parser.parse_args()
    summary = run_demo(args.shared, args.out, args.threshold)
    print(f"\n{'truth':<20} {'predicted':<20} score   image")
    for row in summary["results"]:
        mark = "ok " if row["truth"] == row["predicted"] else "ERR"
        print(f"{row['truth']:<20} {row['predicted']:<20} {row['score'] if row['score'] is not None else '-':<7} "
              f"{mark} {Path(row['image']).name}")
    print(f"\n{summary['correct']}/{summary['probes']} probes right ({100 * summary['accuracy']:.0f}%) at threshold "
          f"{summary['threshold']} in {summary['seconds']} s")
    print(f"Annotated images, gallery and summary.json are in {args.out.resolve()}")


if __name__ == "__main__":
    main()
