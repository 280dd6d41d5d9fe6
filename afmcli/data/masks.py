"""Object masks for AFMNet's FPD branch: one map for small objects, one for large.

One rendering function, `render_object_masks`, serves the mask files
(`afm make-masks`, stride 1), the on-the-fly pipeline transform and the model's
fallback when a sample has no mask ground truth, so that all three agree.

Rule: cell (i, j) of a stride-s map is on when its point lies inside an object's shape.
At the detector's strides (s > 1) the point is (j*s, i*s), where mmdet's priors sit
(AnchorGenerator's center_offset 0), so that a mask cell and the prior it guides are one
point (at the cell centre ((j+0.5)*s) they were half a cell apart: 4 px at stride 8). At
stride 1 (the mask files, image pixels) it is the pixel centre (j+0.5, i+0.5). Shapes:

- ``oval`` (the published choice): the ellipse inscribed in the box;
- ``gaussian``: a 2-D Gaussian fitted to the box (sigma = w/6, h/6, so the box
  edge sits at 3 sigma), kept where it is at least ``threshold`` of its peak;
  this is again an ellipse, ``sqrt(-2 ln threshold) / 3`` times the inscribed one.

Besides, the cell holding a box's centre is always on (``keep_centre``): at
stride 8 or 16 a tiny object would otherwise cover no cell centre and vanish
from the mask that exists to find it.

A box is small when its area in ORIGINAL image pixels is below ``small_area``
(COCO's 32x32 by default; the published threshold is unknown).
Crowd (score-0) boxes are not drawn: callers leave them out.
"""

from __future__ import annotations

import math

import numpy as np

from afmcli.errors import AfmError

KINDS = ("oval", "gaussian")
DEFAULT_SMALL_AREA = 32 * 32
DEFAULT_GAUSSIAN_THRESHOLD = 0.1


def shape_radius(kind: str, threshold: float = DEFAULT_GAUSSIAN_THRESHOLD) -> float:
    """Radius of the drawn ellipse relative to the inscribed one (1 for ``oval``)."""
    if kind == "oval":
        return 1.0
    if kind == "gaussian":
        if not 0 < threshold < 1:
            raise AfmError(f"gaussian mask threshold must be in (0, 1), got {threshold}")
        # exp(-rho^2 * 9 / 2) >= t  <=>  rho <= sqrt(-2 ln t) / 3, rho in half-box units.
        return math.sqrt(-2.0 * math.log(threshold)) / 3.0
    raise AfmError(f"unknown mask kind {kind!r} (choose from {', '.join(KINDS)})")


def cell_offset(stride: float) -> float:
    """Where cell j of a stride-s map is read, in cells: j + offset (see the module docstring)."""
    return 0.5 if stride == 1 else 0.0


def draw_ellipses(mask: np.ndarray, bboxes_xyxy: np.ndarray, stride: float, radius: float = 1.0,
                  keep_centre: bool = True) -> np.ndarray:
    """Set to 1 the cells of ``mask`` whose points lie in each box's ellipse (in place).

    The ellipse is centred on the box with semi-axes ``radius * w/2, radius * h/2``
    (image pixels). Work per box is one vectorised pass over its bounding window.
    """
    out_h, out_w = mask.shape
    off = cell_offset(stride)
    boxes = np.asarray(bboxes_xyxy, dtype=np.float64).reshape(-1, 4)
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        a, b = radius * (x2 - x1) / 2, radius * (y2 - y1) / 2
        if keep_centre and 0 <= cx < out_w * stride and 0 <= cy < out_h * stride:
            # the cell whose point is nearest the box centre
            mask[min(out_h - 1, math.floor(cy / stride + 0.5 - off)), min(out_w - 1, math.floor(cx / stride + 0.5 - off))] = 1
        if a <= 0 or b <= 0:
            continue
        # Cells whose point (k + off) * stride lies in [c - r, c + r].
        j0 = max(0, math.ceil((cx - a) / stride - off))
        j1 = min(out_w - 1, math.floor((cx + a) / stride - off))
        i0 = max(0, math.ceil((cy - b) / stride - off))
        i1 = min(out_h - 1, math.floor((cy + b) / stride - off))
        if j1 < j0 or i1 < i0:
            continue
        dx = ((np.arange(j0, j1 + 1) + off) * stride - cx) / a
        dy = ((np.arange(i0, i1 + 1) + off) * stride - cy) / b
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= 1.0
        mask[i0:i1 + 1, j0:j1 + 1] |= inside.view(np.uint8)
    return mask


def render_object_masks(bboxes_xyxy, areas_orig, out_shape: tuple[int, int], stride: float = 1,
                        kind: str = "oval", small_area: float = DEFAULT_SMALL_AREA,
                        threshold: float = DEFAULT_GAUSSIAN_THRESHOLD,
                        keep_centre: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render the small- and large-object masks of one image.

    Args:
        bboxes_xyxy: (N, 4) boxes x1, y1, x2, y2 in current image pixels (numpy,
            list or torch tensor). Leave crowd boxes out.
        areas_orig: (N,) box areas in ORIGINAL image pixels, for the small/large
            split (equal to the box areas when the image was not resized).
        out_shape: (rows, cols) of the output maps, e.g. ceil(H / stride), ceil(W / stride).
        stride: image pixels per cell (1 = image resolution).
        kind: ``oval`` or ``gaussian`` (see the module docstring); ``threshold``
            is the gaussian's cut-off relative to its peak.
        small_area: boxes with ``areas_orig < small_area`` go to the small mask.

    Returns:
        (mask_s, mask_l), uint8 arrays of ``out_shape`` with values 0/1.
    """
    radius = shape_radius(kind, threshold)
    boxes = _as_numpy(bboxes_xyxy).astype(np.float64).reshape(-1, 4)
    areas = _as_numpy(areas_orig).astype(np.float64).reshape(-1)
    if len(areas) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(areas)} areas")
    small = areas < small_area
    shape = (int(out_shape[0]), int(out_shape[1]))
    mask_s = draw_ellipses(np.zeros(shape, np.uint8), boxes[small], stride, radius, keep_centre)
    mask_l = draw_ellipses(np.zeros(shape, np.uint8), boxes[~small], stride, radius, keep_centre)
    return mask_s, mask_l


def render_object_masks_torch(bboxes_xyxy, areas_orig, out_shape: tuple[int, int], stride: float = 1,
                              **kwargs):
    """`render_object_masks` for torch callers: float 0/1 tensors on the boxes' device."""
    import torch

    mask_s, mask_l = render_object_masks(bboxes_xyxy, areas_orig, out_shape, stride, **kwargs)
    device = bboxes_xyxy.device if isinstance(bboxes_xyxy, torch.Tensor) else None
    return (torch.from_numpy(mask_s).to(device=device, dtype=torch.float32),
            torch.from_numpy(mask_l).to(device=device, dtype=torch.float32))


def sample_cell_centres(full_mask: np.ndarray, img_shape: tuple[int, int], stride: int) -> np.ndarray:
    """Downsample a full-resolution 0/1 map to stride ``stride`` by reading cell points.

    Output shape is ceil(H / stride) x ceil(W / stride) of ``img_shape``. Cell (i, j)
    is read at its point, the rule of `render_object_masks`: (j*stride, i*stride) for
    stride > 1. That point is a pixel corner, so the 2x2 pixels around it vote (on when at
    least 3 of 4 are on: closest to rendering at that point; beyond the image the edge
    pixel counts); at stride 1 the pixel itself is read.
    """
    h, w = int(img_shape[0]), int(img_shape[1])
    full = np.asarray(full_mask)[:h, :w].astype(np.uint8)

    def taps(n_cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        centre = (np.arange(n_cells) + cell_offset(stride)) * stride - 0.5  # in pixel-centre coordinates
        return (np.clip(np.floor(centre), 0, size - 1).astype(np.int64),
                np.clip(np.ceil(centre), 0, size - 1).astype(np.int64))

    r0, r1 = taps(math.ceil(h / stride), h)
    c0, c1 = taps(math.ceil(w / stride), w)
    votes = (full[r0[:, None], c0] + full[r0[:, None], c1]).astype(np.int64) + full[r1[:, None], c0] + full[r1[:, None], c1]
    return (votes >= 3).astype(np.uint8)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)
