"""The network: a light depthwise-separable backbone, a small FPN down to stride 4, and a CenterNet-style head.

For every cell of the stride-4 map the head predicts

* a face-centre score (one heatmap channel, a logit);
* the box as log-distances from the cell centre to its four sides (FCOS's l, t, r, b), in units of the stride;
* the 5 landmarks as offsets from the cell centre, in units of the face size (the geometric mean of the box sides),
  so one head serves faces from 10 to 300 pixels.

Decoding keeps the local maxima of the heatmap (a 3x3 max-pool, CenterNet's NMS), adds a plain IoU NMS for
neighbouring peaks of one face, and returns :class:`faceops.face.detection.Face` objects, the same type MTCNN's
wrapper gives, so alignment and everything after it do not know which detector ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.ops import nms

from faceops.face.detection import Face

__all__ = ["STRIDE", "FaceNet", "count_flops", "decode"]

STRIDE = 4
_LOG_CLAMP = 6.0  # exp(6) * 4 px = 1600 px: the widest box a cell may predict


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 (MobileNet v1), with a residual when the shape allows."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return F.relu(y + x if self.residual else y)


def _stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(_Block(cin, cout, 2), *[_Block(cout, cout) for _ in range(blocks - 1)])


class FaceNet(nn.Module):
    """The detector network.

    Args:
        width: channels of the FPN and the head.
        channels: channels of the backbone stages at strides 4, 8, 16 and 32.
    """

    def __init__(self, width: int = 48, channels: Sequence[int] = (24, 48, 96, 160)) -> None:
        super().__init__()
        c4, c8, c16, c32 = channels
        self.stem = _conv_bn(3, 16, 3, 2)
        self.s4 = _stage(16, c4, 2)
        self.s8 = _stage(c4, c8, 2)
        self.s16 = _stage(c8, c16, 3)
        self.s32 = _stage(c16, c32, 2)
        self.lateral = nn.ModuleList([_conv_bn(c, width) for c in (c4, c8, c16, c32)])
        self.smooth = nn.ModuleList([_Block(width, width) for _ in range(3)])
        self.trunk = _Block(width, width)
        self.heatmap = nn.Conv2d(width, 1, 1)
        self.box = nn.Conv2d(width, 4, 1)
        self.landmarks = nn.Conv2d(width, 10, 1)
        # Focal-loss prior: every cell starts at a face probability of 0.01, so early training is not swamped.
        with torch.no_grad():
            self.heatmap.bias.fill_(-4.6)  # type: ignore[union-attr]
            self.box.bias.fill_(1.0)  # type: ignore[union-attr]
            self.landmarks.bias.zero_()  # type: ignore[union-attr]
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.normal_(self.landmarks.weight, std=0.01)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs for a (B, 3, H, W) float batch in [0, 1], H and W multiples of 32.

        Returns:
            ``heatmap`` (B, 1, H/4, W/4) logits, ``box`` (B, 4, H/4, W/4) log-distances in strides and
            ``landmarks`` (B, 10, H/4, W/4) offsets in face sizes (x, y per point).
        """
        x = self.stem((images - 0.5) / 0.25)
        f4 = self.s4(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        feats = [lat(f) for lat, f in zip(self.lateral, (f4, f8, f16, f32), strict=True)]
        top = feats[3]
        for level in (2, 1, 0):
            top = self.smooth[level](feats[level] + F.interpolate(top, size=feats[level].shape[-2:], mode="nearest"))
        y = self.trunk(top)
        return {"heatmap": self.heatmap(y), "box": self.box(y), "landmarks": self.landmarks(y)}


def cell_centres(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(2, H, W) x, y pixel centres of the cells of a stride-4 map."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * STRIDE
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])


def boxes_from_output(box: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) log-distances -> (B, 4, H, W) x1, y1, x2, y2 in pixels."""
    dist = torch.exp(box.clamp(max=_LOG_CLAMP)) * STRIDE
    centres = cell_centres(box.shape[-2], box.shape[-1], box.device)
    return torch.cat([centres - dist[:, :2], centres + dist[:, 2:]], dim=1)


@torch.no_grad()
def decode(
    outputs: dict[str, torch.Tensor],
    threshold: float = 0.5,
    top_k: int = 100,
    nms_iou: float = 0.4,
    scales: Sequence[float] | None = None,
) -> list[list[Face]]:
    """Faces from the raw outputs of a batch, most probable first.

    Args:
        outputs: :meth:`FaceNet.forward`'s dict.
        threshold: lowest centre score kept.
        top_k: most peaks looked at per image.
        nms_iou: boxes overlapping a more probable one by more than this are dropped.
        scales: per image, the factor from network pixels back to the caller's pixels (1.0 when ``None``).
    """
    heat = torch.sigmoid(outputs["heatmap"])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    boxes = boxes_from_output(outputs["box"])
    batch, _, height, width = heat.shape
    centres = cell_centres(height, width, heat.device)
    results: list[list[Face]] = []
    for b in range(batch):
        scores, index = peaks[b, 0].flatten().topk(min(top_k, height * width))
        keep = scores >= threshold
        scores, index = scores[keep], index[keep]
        found = boxes[b].flatten(1)[:, index].T  # (K, 4)
        size = ((found[:, 2] - found[:, 0]).clamp(min=1) * (found[:, 3] - found[:, 1]).clamp(min=1)).sqrt()
        offsets = outputs["landmarks"][b].flatten(1)[:, index].T.reshape(-1, 5, 2)
        points = centres.flatten(1)[:, index].T[:, None, :] + offsets * size[:, None, None]
        chosen = nms(found, scores, nms_iou)
        scale = 1.0 if scales is None else float(scales[b])
        results.append(
            [
                Face(
                    box=tuple(float(v) * scale for v in found[i]),  # type: ignore[arg-type]
                    probability=float(scores[i]),
                    landmarks=points[i].cpu().numpy().astype(np.float32) * scale,
                )
                for i in chosen.tolist()
            ]
        )
    return results


def count_flops(model: nn.Module, size: int = 320) -> int:
    """Multiply-accumulates of one forward pass on a ``size`` x ``size`` image (convolutions only; BN, ReLU and
    the upsampling adds are a rounding error beside them). FLOPs are commonly quoted as these MACs."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
