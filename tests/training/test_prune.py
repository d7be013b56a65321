"""Structured channel pruning + distillation (``faceops optimize --method prune``) on the real weights and real LFW
faces: a tiny sparsity, a few crops, one short epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceops.cli import cli
from faceops.errors import ConfigError, FaceOpsError
from faceops.evaluation.bundle import ModelBundle
from faceops.face.backends import export_onnx
from faceops.optimize import build_variant, calibration_crops
from faceops.training.prune import PruneConfig, PruneReport, prune_and_distill, prune_channels

TINY = PruneConfig(sparsity=0.05, epochs=1, batch_size=4, lr=1e-4, heldout_fraction=0.0)


@pytest.fixture(scope="module")
def champion() -> ModelBundle:
    return ModelBundle.pretrained()


@pytest.fixture(scope="module")
def photos(lfw: Path) -> list[Path]:
    return [lfw / person / f"{person}_0001.jpg" for person in ("Hans_Blix", "Laura_Bush", "Serena_Williams",
                                                                 "Hugo_Chavez", "Jean_Chretien", "Vladimir_Putin")]


@pytest.fixture(scope="module")
def crops(champion: ModelBundle, photos: list[Path]) -> np.ndarray:
    return np.concatenate(calibration_crops(champion.preprocess, photos, purpose="pruning distillation"))


@pytest.fixture(scope="module")
def pruned(champion: ModelBundle, crops: np.ndarray) -> tuple[torch.nn.Module, PruneReport]:
    return prune_and_distill(champion.torch_module, crops, TINY, 160)


def test_the_pruned_net_is_smaller_keeps_its_embedding_size_and_matches_on_onnx_runtime(
    champion: ModelBundle, crops: np.ndarray, pruned: tuple[torch.nn.Module, PruneReport]
) -> None:
    student, report = pruned
    params = sum(p.numel() for p in student.parameters())
    assert params == report.params_after < report.params_before == sum(p.numel() for p in champion.torch_module.parameters())
    assert report.macs_after < report.macs_before
    teacher = dict(champion.torch_module.named_modules())
    widths = {name: (m.out_channels, teacher[name].out_channels) for name, m in student.named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    assert all(mine <= theirs for mine, theirs in widths.values())
    assert any(mine < theirs for mine, theirs in widths.values())
    # the residual stream is kept whole: every block still adds as many channels as it did
    assert all(mine == theirs for name, (mine, theirs) in widths.items() if name.endswith(".conv2d"))
    assert student.last_linear.in_features == champion.torch_module.last_linear.in_features
    with torch.inference_mode():
        expected = student(torch.as_tensor(crops)).numpy()
    assert expected.shape == (len(crops), 512)
    net = export_onnx(student, 160)  # itself checks the export against PyTorch on random input
    assert net.dim == 512 and net.backend == "onnxruntime"
    np.testing.assert_allclose(net(crops), expected, atol=1e-4)


def test_distillation_lowers_the_student_teacher_loss(pruned: tuple[torch.nn.Module, PruneReport]) -> None:
    _, report = pruned
    assert report.crops_train == 6 and report.epochs == 1 and len(report.epoch_losses) == 1
    assert report.loss_before > 0
    assert report.epoch_losses[0]["heldout"] < report.loss_before
    assert report.loss_after == report.epoch_losses[0]["heldout"] and report.best_epoch == 1


def test_build_variant_prune_gives_a_loadable_onnx_bundle(
    champion: ModelBundle, crops: np.ndarray, photos: list[Path], tmp_path: Path
) -> None:
    variant = build_variant(champion, "prune", photos, prune=TINY.model_copy(update={"epochs": 0}))
    assert variant.backend == "onnxruntime" and variant.family == champion.family
    assert variant.metadata["method"] == "prune" and variant.metadata["sparsity"] == 0.05
    assert variant.metadata["calibration_faces"] == len(photos)
    assert variant.metadata["params"] < variant.metadata["prune"]["params_before"]
    loaded = ModelBundle.load(variant.save(tmp_path / "pruned"))
    assert loaded.backend == "onnxruntime" and loaded.metadata["sparsity"] == 0.05
    assert loaded.preprocess.embedder.backend == "onnxruntime" and loaded.preprocess.align == champion.preprocess.align
    assert loaded.metadata["prune"]["config"]["sparsity"] == 0.05
    pixels = (np.clip(np.transpose(crops, (0, 2, 3, 1)) * 128 + 127.5, 0, 255)).astype(np.uint8)
    got = loaded.recognizer().embedder.embed(pixels)
    assert got.shape == (len(crops), 512)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.5, -0.2])
def test_a_sparsity_outside_0_1_is_a_clear_error(champion: ModelBundle, crops: np.ndarray, sparsity: float) -> None:
    with pytest.raises(ConfigError, match="sparsity must be a share of channels strictly between 0 and 1"):
        prune_channels(champion.torch_module, sparsity)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        build_variant(champion, "prune", prune=PruneConfig.model_construct(sparsity=sparsity), crops=crops)


def test_no_distillation_crops_is_a_clear_error(champion: ModelBundle) -> None:
    with pytest.raises(FaceOpsError, match="pruning distillation needs face crops: none were given"):
        build_variant(champion, "prune", crops=np.zeros((0, 3, 160, 160), np.float32))
    with pytest.raises(FaceOpsError, match="pruning distillation needs images: none were given"):
        build_variant(champion, "prune", [])


def test_cli_bad_sparsity_or_faceless_calibration_registers_nothing(
    champion: ModelBundle, local_store: str, tmp_path: Path
) -> None:
    from PIL import Image

    from faceops import registry

    champion_dir = champion.save(tmp_path / "champion")
    blanks = tmp_path / "blank"
    blanks.mkdir()
    for i in range(2):
        Image.new("RGB", (200, 200), (120 + i, 120, 120)).save(blanks / f"blank{i}.jpg")
    base = ["optimize", "--from", str(champion_dir), "--method", "prune", "--calibration", str(blanks),
            "--lfw-folds", "1-2", "--pairs-per-fold", "4", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*base, "--sparsity", "1.5"])
    assert result.exit_code == 1, result.output
    assert "sparsity must be a share of channels strictly between 0 and 1, not 1.5" in result.output
    result = CliRunner().invoke(cli, [*base, "--sparsity", "0.25"])
    assert result.exit_code == 1, result.output
    assert "no faces found in the 2 calibration image(s)" in result.output
    assert "pruning distillation needs photos of faces" in result.output
    result = CliRunner().invoke(cli, [b for b in base if b not in ("--calibration", str(blanks))])
    assert result.exit_code == 2 and "--method prune needs --calibration DIR" in result.output
    assert registry.list_versions(local_store) == []
    assert not (tmp_path / "out" / "bundle").exists()


def _spread(embeddings: torch.Tensor) -> float:
    """How much the embeddings vary across faces (mean over dimensions of their standard deviation)."""
    return float(embeddings.std(dim=0).mean())


def test_the_stem_is_kept_whole_so_the_embeddings_still_vary_across_faces(
    champion: ModelBundle, crops: np.ndarray
) -> None:
    """At sparsity 0.4 a pruned stem (32-channel convolutions cut to 16) leaves embeddings that hardly vary across
    faces, and distillation collapses them onto one vector; the stem is kept whole by default."""
    teacher = champion.torch_module.eval()
    faces = torch.as_tensor(crops)
    kept = prune_channels(teacher, 0.4)
    pruned_stem = prune_channels(teacher, 0.4, keep_stem=False)
    for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a"):
        assert getattr(kept, name).conv.out_channels == getattr(teacher, name).conv.out_channels
        assert getattr(pruned_stem, name).conv.out_channels < getattr(teacher, name).conv.out_channels
    assert kept.repeat_1[0].branch0.conv.out_channels < teacher.repeat_1[0].branch0.conv.out_channels
    with torch.inference_mode():
        target, mine, theirs = teacher(faces), kept(faces), pruned_stem(faces)
    assert _spread(mine) > 2 * _spread(theirs)
    assert float((mine * target).sum(dim=1).mean()) > float((theirs * target).sum(dim=1).mean())
