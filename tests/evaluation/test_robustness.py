"""The robustness suite on a handful of real LFW pairs: conditions on the probe side, slices, groups, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceops.data.manifest import ManifestRow, write_manifest
from faceops.errors import ConfigError, DataValidationFailed
from faceops.evaluation.pairs import Pair, read_lfw_pairs
from faceops.evaluation.robustness import RobustnessReport, held_out_pairs, plot_robustness, run_robustness
from faceops.face.config import DEFAULT_THRESHOLD

TARGET_FAR = 0.1  # 10 impostor pairs: the lowest FAR they can measure


@pytest.fixture(scope="module")
def pairs(lfw: Path) -> list[Pair]:
    fold = read_lfw_pairs(lfw / "pairs.txt", lfw, folds=[1])
    return fold[:8] + fold[300:310]  # 8 genuine, 10 impostor pairs


@pytest.fixture(scope="module")
def report(recognizer, pairs: list[Pair], lfw: Path) -> RobustnessReport:  # type: ignore[no-untyped-def]
    attributes = {"sex": {pairs[0].b.relative_to(lfw).as_posix(): "male"}}
    return run_robustness(
        recognizer,
        pairs,
        DEFAULT_THRESHOLD,
        TARGET_FAR,
        conditions=["underexposure", "occlusion_eyes"],
        severities={"underexposure": 1.0},
        min_pairs=5,
        attributes=attributes,
        attribute_root=lfw,
    )


def test_conditions_are_measured_against_clean(report: RobustnessReport) -> None:
    clean = report.clean
    assert (clean["pairs"], clean["genuine"], clean["impostors"], clean["status"]) == (18, 8, 10, "ok")
    assert set(report.conditions) == {"underexposure", "occlusion_eyes"}
    dark = report.conditions["underexposure"]
    assert dark["params"]["severity"] == 1.0 and dark["params"]["gamma"] == pytest.approx(2.5)
    for m in report.conditions.values():
        assert m["status"] == "ok" and m["pairs"] == 18
        assert m["frr_increase"] == pytest.approx(m["frr"] - clean["frr"])
        assert m["tar_drop"] == pytest.approx(clean["tar_at_far"] - m["tar_at_far"])
        assert m["auc_drop"] == pytest.approx(clean["auc"] - m["auc"])
    # covering both eyes is the hardest thing asked of a face model: it must cost something here
    eyes = report.conditions["occlusion_eyes"]
    assert eyes["frr"] > clean["frr"] and eyes["auc"] < clean["auc"]


def test_slices_groups_and_table(report: RobustnessReport, tmp_path: Path) -> None:
    assert set(report.groups) == {"skin_tone", "pose", "expression", "brightness", "quality", "attr:sex"}
    for grouping in ("pose", "brightness"):
        sizes = sum(g["pairs"] for g in report.groups[grouping]["groups"].values())
        assert sizes == 18 - report.clean["no_face"] or sizes <= 18
    assert report.groups["attr:sex"]["groups"]["male"]["pairs"] == 1
    assert report.groups["attr:sex"]["groups"]["male"]["status"] == "insufficient"  # one pair: shown, flagged
    table = report.table()
    assert len({len(v) for v in table.values()}) == 1
    assert table["name"][:3] == ["clean", "underexposure", "occlusion_eyes"]
    assert "slice" in table["kind"] and "group" in table["kind"] and "attr:sex/male" in table["name"]
    data = json.loads(json.dumps(report.to_dict()))
    assert "probe" in data["probe_side"]
    png = plot_robustness(data, tmp_path / "robustness.png")
    assert png.stat().st_size > 5000


def test_too_few_pairs_is_insufficient_and_runs_are_reproducible(recognizer, pairs: list[Pair]) -> None:  # type: ignore[no-untyped-def]
    few = [pairs[0], pairs[10]]
    first = run_robustness(recognizer, few, DEFAULT_THRESHOLD, conditions=["noise"], seed=7)
    assert first.clean["status"] == "insufficient" and first.conditions["noise"]["status"] == "insufficient"
    assert all(g["status"] == "insufficient" for r in first.groups.values() for g in r["groups"].values())
    assert first.to_dict() == run_robustness(recognizer, few, DEFAULT_THRESHOLD, conditions=["noise"], seed=7).to_dict()


def test_bad_arguments_fail_before_any_work(recognizer, pairs: list[Pair]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="unknown image condition 'fog'"):
        run_robustness(recognizer, pairs, 0.5, conditions=["fog"])
    with pytest.raises(ConfigError, match="not run"):
        run_robustness(recognizer, pairs, 0.5, conditions=["noise"], severities={"jpeg": 0.5})
    with pytest.raises(DataValidationFailed, match="no pairs"):
        run_robustness(recognizer, [], 0.5, conditions=["noise"])


def test_held_out_pairs_of_a_data_version(tmp_path: Path, lfw: Path) -> None:
    rows = []
    for name in ("Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"):
        (tmp_path / name).symlink_to(lfw / name, target_is_directory=True)
        for path in sorted((lfw / name).glob("*.jpg"))[:3]:
            rows.append(ManifestRow(f"{name}/{path.name}", name, "test", "0" * 64, 150, 150, "JPEG"))
    rows.append(ManifestRow("AJ_Cook/AJ_Cook_0001.jpg", "AJ_Cook", "train", "0" * 64, 150, 150, "JPEG"))
    write_manifest(rows, tmp_path / "manifest.csv")
    chosen = held_out_pairs(tmp_path, max_pairs=100, seed=0)
    genuine = [p for p in chosen if p.same]
    assert len(genuine) == 9 and len(chosen) == 18  # 3 identities x 3 pairs, as many impostors
    assert all(p.a.parent.name != p.b.parent.name for p in chosen if not p.same)
    assert all("AJ_Cook" not in str(p.a) + str(p.b) for p in chosen)  # train identities are not used
    assert chosen == held_out_pairs(tmp_path, max_pairs=100, seed=0)
    write_manifest(rows[:3], tmp_path / "manifest.csv")
    with pytest.raises(DataValidationFailed, match="at least two identities"):
        held_out_pairs(tmp_path)


def test_cli_evaluate_robustness(tmp_path: Path, pairs: list[Pair]) -> None:
    from faceops.cli import cli

    csv = tmp_path / "pairs.csv"
    csv.write_text("a,b,same_person\n" + "".join(f"{p.a},{p.b},{int(p.same)}\n" for p in [*pairs[:2], *pairs[10:12]]))
    out = tmp_path / "out"
    args = ["evaluate", "--model", "pretrained", "--robustness", "--lfw-pairs", str(csv), "--conditions", "greyscale"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["pretrained"]
    assert Path(summary["plot"]).is_file() and summary["table"]["name"][:2] == ["clean", "greyscale"]
    saved = json.loads(Path(summary["report"]).read_text())
    assert saved["pairs"] == 4 and saved["conditions"]["greyscale"]["status"] == "insufficient"
    bad = CliRunner().invoke(cli, [*args[:-1], "fog", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown image condition 'fog'" in bad.output


def test_pipeline_step(tmp_path: Path, pairs: list[Pair]) -> None:
    from faceops.evaluation.bundle import ModelBundle
    from faceops.steps.robustness import robustness_step

    ModelBundle.pretrained().save(tmp_path / "model" / "bundle")
    csv = tmp_path / "pairs.csv"
    csv.write_text("a,b,same_person\n" + "".join(f"{p.a},{p.b},{int(p.same)}\n" for p in [pairs[0], pairs[10]]))
    out = tmp_path / "out"
    metrics = robustness_step(tmp_path / "model", tmp_path, None, out, ["jpeg"], str(csv))
    assert {"clean_frr", "jpeg_frr"} <= set(metrics)
    assert {p.name for p in out.iterdir()} >= {"robustness.json", "table.json", "robustness.png", "report.html"}
    assert json.loads((out / "robustness.json").read_text())["conditions"]["jpeg"]["pairs"] == 2
