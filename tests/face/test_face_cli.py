"""Each CLI command end to end on real photos, through click's runner, exit codes included."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceops.cli import cli

PEOPLE = {"Colin_Powell": 3, "Serena_Williams": 3, "Hugo_Chavez": 3}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def people(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder per identity with three LFW photos each, plus a bad file that enrolment must skip."""
    root = tmp_path_factory.mktemp("people")
    for name, n in PEOPLE.items():
        (root / name).mkdir()
        for src in sorted((lfw / name).glob("*.jpg"))[:n]:
            shutil.copy(src, root / name / src.name)
    (root / "Colin_Powell" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _json(output: str) -> dict:
    return json.loads(output[output.index("{") :])


def test_detect_writes_annotated_images_and_json(runner: CliRunner, datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    result = runner.invoke(cli, ["detect", str(datasets / "multiface" / "multiface.jpg"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = _json(result.stdout)
    faces = payload["results"][0]["faces"]
    assert len(faces) >= 6 and {"box", "probability", "landmarks"} <= set(faces[0])
    record = json.loads((out / "multiface_multiface.json").read_text())
    assert len(record["faces"]) == len(faces)
    assert (out / "multiface_multiface.jpg").stat().st_size > 10_000


def test_detect_folder_goes_past_bad_files(runner: CliRunner, people: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["detect", str(people / "Colin_Powell"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 3, "a bad input in the folder gives exit code 3"
    assert result.stdout.count("face(s)") == 3, "the three good photos were processed"
    assert "could not be used" in result.stderr and "broken.jpg" in result.stderr


def test_enroll_twice_adds_and_recognize(runner: CliRunner, people: Path, lfw: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery.npz"
    first = runner.invoke(cli, ["enroll", str(people), "--gallery", str(gallery), "--json"])
    assert first.exit_code == 3, "broken.jpg is reported"
    summary = _json(first.stdout)
    assert summary["identities"] == PEOPLE
    assert summary["failures"][0]["input"].endswith("broken.jpg")

    extra = tmp_path / "more" / "Gerhard_Schroeder"
    extra.mkdir(parents=True)
    for src in sorted((lfw / "Gerhard_Schroeder").glob("*.jpg"))[:2]:
        shutil.copy(src, extra / src.name)
    second = runner.invoke(cli, ["enroll", str(extra.parent), "--gallery", str(gallery), "--json"])
    assert second.exit_code == 0, second.output
    assert _json(second.stdout)["identities"] == {**PEOPLE, "Gerhard_Schroeder": 2}
    again = runner.invoke(cli, ["enroll", str(extra.parent), "--gallery", str(gallery), "--json"])
    assert _json(again.stdout)["added"] == {}, "photos already enrolled are not added twice"

    known = sorted((lfw / "Serena_Williams").glob("*.jpg"))[5]
    stranger = lfw / "Tiger_Woods" / "Tiger_Woods_0001.jpg"
    result = runner.invoke(cli, ["recognize", str(known), str(stranger), "--gallery", str(gallery), "--json",
                                 "--out", str(tmp_path / "annotated")])
    assert result.exit_code == 0, result.output
    results = _json(result.stdout)["results"]
    subject = [max(r["faces"], key=lambda f: f["probability"]) for r in results]
    assert subject[0]["identity"] == "Serena_Williams" and subject[0]["score"] >= _json(result.stdout)["threshold"]
    assert subject[1]["identity"] == "unknown"
    assert [c["identity"] for c in subject[0]["candidates"]][0] == "Serena_Williams"
    assert Path(results[0]["annotated"]).is_file()


def test_verify_two_images(runner: CliRunner, lfw: Path) -> None:
    a, b = sorted((lfw / "Colin_Powell").glob("*.jpg"))[:2]
    same = runner.invoke(cli, ["verify", str(a), str(b), "--json"])
    assert same.exit_code == 0 and _json(same.stdout)["same"] is True
    other = runner.invoke(cli, ["verify", str(a), str(lfw / "Serena_Williams" / "Serena_Williams_0001.jpg")])
    assert other.exit_code == 0 and "different people" in other.stdout


def test_verify_pairs_csv_reaches_auc(runner: CliRunner, datasets: Path, tmp_path: Path) -> None:
    """deepface's 300 labelled pairs: ROC AUC >= 0.99."""
    root = datasets / "deepface_testset"
    roc = tmp_path / "roc.png"
    result = runner.invoke(cli, ["verify", "--pairs", str(root / "pairs.csv"), "--root", str(root), "--json",
                                 "--roc", str(roc)])
    assert result.exit_code == 0, result.output
    report = _json(result.stdout)
    assert report["pairs"] == 300 and report["genuine"] == 38
    assert report["auc"] >= 0.99, report
    assert roc.stat().st_size > 5_000


def _hand_figures(scores_csv: Path, threshold: float) -> tuple[float, float, float]:
    """Accuracy, FAR and FRR at ``threshold`` counted from the per-pair scores the command saved."""
    rows = [(float(r["score"]), r["same"] == "1") for r in csv.DictReader(scores_csv.read_text().splitlines())]
    genuine = [score for score, same in rows if same]
    impostor = [score for score, same in rows if not same]
    right = sum(score >= threshold for score in genuine) + sum(score < threshold for score in impostor)
    return (
        right / len(rows),
        sum(score >= threshold for score in impostor) / len(impostor),
        sum(score < threshold for score in genuine) / len(genuine),
    )


def test_verify_pairs_on_one_fold_reports_accuracy_far_frr_at_the_threshold(
    runner: CliRunner, lfw: Path, tmp_path: Path
) -> None:
    from faceops.face.presets import DEFAULT_MODEL_THRESHOLD

    pairs = tmp_path / "pairs.csv"
    genuine = [(f"{n}/{n}_0001.jpg", f"{n}/{n}_0002.jpg", 1) for n in ("Colin_Powell", "Serena_Williams",
                                                                          "Hugo_Chavez", "Tony_Blair")]
    impostor = [("Colin_Powell/Colin_Powell_0003.jpg", "Donald_Rumsfeld/Donald_Rumsfeld_0001.jpg", 0),
                ("Serena_Williams/Serena_Williams_0003.jpg", "Venus_Williams/Venus_Williams_0001.jpg", 0),
                ("Hugo_Chavez/Hugo_Chavez_0003.jpg", "Jean_Chretien/Jean_Chretien_0001.jpg", 0),
                ("Tony_Blair/Tony_Blair_0003.jpg", "Venus_Williams/Venus_Williams_0002.jpg", 0)]
    pairs.write_text("a,b,same_person\n" + "".join(f"{a},{b},{same}\n" for a, b, same in genuine + impostor))

    scores = tmp_path / "scores.csv"
    result = runner.invoke(cli, ["verify", "--pairs", str(pairs), "--root", str(lfw), "--json",
                                 "--scores-out", str(scores)])
    assert result.exit_code == 0, result.output
    report = _json(result.stdout)
    # one fold: the default model's calibrated threshold
    assert report["accuracy_mean"] is None and report["threshold"] == DEFAULT_MODEL_THRESHOLD
    accuracy, far, frr = _hand_figures(scores, DEFAULT_MODEL_THRESHOLD)
    assert (report["accuracy_at_threshold"], report["far_at_threshold"], report["frr_at_threshold"]) == (
        pytest.approx(accuracy), pytest.approx(far), pytest.approx(frr))
    assert 0.5 < report["auc"] <= 1 and "0.001" in report["tar_at_far"]

    # A threshold just above the second-lowest genuine score rejects at least two genuine pairs.
    genuine_scores = sorted(float(r["score"]) for r in csv.DictReader(scores.read_text().splitlines()) if r["same"] == "1")
    strict = round(genuine_scores[1] + 1e-4, 4)
    table = runner.invoke(cli, ["verify", "--pairs", str(pairs), "--root", str(lfw), "--threshold", str(strict),
                                "--scores-out", str(scores)])
    assert table.exit_code == 0, table.output
    accuracy, far, frr = _hand_figures(scores, strict)
    assert frr >= 0.5 and accuracy < 1
    lines = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in table.stdout.splitlines() if "  " in line}
    assert lines["accuracy"] == f"{100 * accuracy:.2f}% (threshold {strict:.4f})", table.stdout
    assert lines["FAR / FRR"] == f"{100 * far:.2f}% / {100 * frr:.2f}% (threshold {strict:.4f})", table.stdout


def test_exit_codes(runner: CliRunner, lfw: Path, datasets: Path, tmp_path: Path) -> None:
    photo = lfw / "Colin_Powell" / "Colin_Powell_0001.jpg"
    assert runner.invoke(cli, ["verify", str(photo)]).exit_code == 2, "usage error"
    assert runner.invoke(cli, ["detect", str(photo)]).exit_code == 2, "--out is required"
    missing = runner.invoke(cli, ["verify", str(photo), str(tmp_path / "missing.jpg")])
    assert missing.exit_code == 3 and "does not exist" in missing.stderr
    from PIL import Image

    Image.open(datasets / "multiface" / "t1.jpg").crop((300, 620, 1100, 880)).save(tmp_path / "table.jpg")
    no_face = runner.invoke(cli, ["verify", str(photo), str(tmp_path / "table.jpg")])
    assert no_face.exit_code == 4 and "no face detected" in no_face.stderr
    gallery = tmp_path / "junk.npz"
    gallery.write_bytes(b"junk")
    bad_gallery = runner.invoke(cli, ["recognize", str(photo), "--gallery", str(gallery)])
    assert bad_gallery.exit_code == 1 and "not a FaceOps gallery" in bad_gallery.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("detector:\n  min_face_sise: 10\n")
    bad_config = runner.invoke(cli, ["verify", str(photo), str(photo), "--config", str(config)])
    assert bad_config.exit_code == 1 and "min_face_sise" in bad_config.stderr


def test_the_default_model_is_mobilefacenet_and_galleries_of_another_model_are_refused(
    runner: CliRunner, people: Path, lfw: Path, tmp_path: Path
) -> None:
    import numpy as np

    from faceops.face.config import DEFAULT_THRESHOLD
    from faceops.face.gallery import Gallery
    from faceops.face.presets import DEFAULT_MODEL_THRESHOLD

    a, b = sorted((lfw / "Colin_Powell").glob("*.jpg"))[:2]
    default = _json(runner.invoke(cli, ["verify", str(a), str(b), "--json"]).stdout)
    assert default["threshold"] == DEFAULT_MODEL_THRESHOLD
    config = tmp_path / "inception.yaml"
    config.write_text("detector:\n  min_face_size: 20\n")  # the pretrained InceptionResnetV1 with this preprocessing
    inception = _json(runner.invoke(cli, ["verify", str(a), str(b), "--json", "--config", str(config)]).stdout)
    assert inception["threshold"] == DEFAULT_THRESHOLD and inception["similarity"] != default["similarity"]

    small = tmp_path / "people" / "Colin_Powell"
    small.mkdir(parents=True)
    for photo in (a, b):
        shutil.copy(photo, small / photo.name)
    mobile, facenet = tmp_path / "mobile.npz", tmp_path / "facenet.npz"
    assert runner.invoke(cli, ["enroll", str(small.parent), "--gallery", str(mobile)]).exit_code == 0
    assert runner.invoke(cli, ["enroll", str(small.parent), "--gallery", str(facenet), "--config", str(config)]).exit_code == 0
    assert Gallery.load(mobile).embeddings_of("Colin_Powell").shape[1] == 128
    assert np.asarray(Gallery.load(facenet).embeddings_of("Colin_Powell")).shape[1] == 512
    probe = sorted((lfw / "Colin_Powell").glob("*.jpg"))[3]
    mixed = runner.invoke(cli, ["recognize", str(probe), "--gallery", str(facenet)])
    assert mixed.exit_code == 1 and "model" in mixed.stderr, mixed.output
    same = runner.invoke(cli, ["recognize", str(probe), "--gallery", str(facenet), "--config", str(config), "--json"])
    assert same.exit_code == 0 and _json(same.stdout)["results"][0]["faces"][0]["identity"] == "Colin_Powell"
    both = runner.invoke(cli, ["verify", str(a), str(b), "--config", str(config), "--model", str(tmp_path)])
    assert both.exit_code == 2 and "drop --config" in both.output
