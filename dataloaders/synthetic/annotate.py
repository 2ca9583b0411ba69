"""Derived labels: occlusion edges (depth discontinuities) and keypoints (visible corners rendered as blobs)."""
from __future__ import annotations

import cv2
import numpy as np

from .scene import NEAR, Hits, Scene, trace

EDGE_MIN_RATIO = 1.03  # far/near z-depth ratio of a depth discontinuity
EDGE_SUBSAMPLES = 8  # sub-steps per pixel step used to tell a real jump from a steep but continuous change


def occlusion_edges(scene: Scene, hits: Hits) -> np.ndarray:
    """Boolean [H, W]: pixels on the near side of a depth discontinuity (occlusion boundary).

    Candidates are 4-neighbour pixel pairs on different primitives whose depths differ by a ratio above
    EDGE_MIN_RATIO. Sampled depth also jumps where two surfaces merely meet (a wall-floor corner seen at a grazing
    angle, a box standing on the floor), so each candidate is re-traced with EDGE_SUBSAMPLES sub-pixel rays along
    the segment joining the two pixel centres: at a real discontinuity one sub-step still jumps by the ratio, while
    a continuous change spreads over the sub-steps (a surface must change depth by more than 24% per pixel to be
    mistaken for a jump). Rays that hit nothing (sky) have infinite depth.
    """
    depth, ids = hits.depth, hits.prim_id
    edges = np.zeros(depth.shape, dtype=bool)
    steps = np.linspace(0.0, 1.0, EDGE_SUBSAMPLES + 1)[1:-1]  # the pixel centres themselves are already traced
    for axis in (0, 1):  # pairs (row, col) - (row + 1, col), then (row, col) - (row, col + 1)
        first = np.s_[:-1, :] if axis == 0 else np.s_[:, :-1]
        second = np.s_[1:, :] if axis == 0 else np.s_[:, 1:]
        near, far = np.minimum(depth[first], depth[second]), np.maximum(depth[first], depth[second])
        with np.errstate(invalid="ignore"):
            candidate = (ids[first] != ids[second]) & (far > near * EDGE_MIN_RATIO)
        rows, cols = np.nonzero(candidate)
        if len(rows) == 0:
            continue
        offsets = np.zeros((len(rows), 2, len(steps)))
        offsets[:, axis, :] = steps
        sample_rows, sample_cols = rows[:, None] + offsets[:, 0], cols[:, None] + offsets[:, 1]
        inner = trace(scene, sample_rows.ravel(), sample_cols.ravel(), hits.rects).reshape(sample_rows.shape)
        samples = np.concatenate([depth[first][rows, cols][:, None], inner, depth[second][rows, cols][:, None]], axis=1)
        lower, upper = np.minimum(samples[:, 1:], samples[:, :-1]), np.maximum(samples[:, 1:], samples[:, :-1])
        with np.errstate(invalid="ignore"):
            jump = np.any(upper > lower * EDGE_MIN_RATIO, axis=1)
        first_nearer = depth[first][rows, cols] < depth[second][rows, cols]
        edges[rows[jump & first_nearer], cols[jump & first_nearer]] = True
        r2, c2 = rows + (axis == 0), cols + (axis == 1)
        edges[r2[jump & ~first_nearer], c2[jump & ~first_nearer]] = True
    return edges


def visible_keypoints(scene: Scene, hits: Hits) -> np.ndarray:
    """Integer pixel coordinates [N, 2] (row, col) of primitive corners that the camera sees."""
    points = [p.keypoints() for p in scene.primitives] + [scene.extra_keypoints]
    points = np.concatenate(points, axis=0)
    camera = scene.camera
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cam = camera.to_camera(points)
    in_front = cam[:, 2] < -NEAR
    cam = cam[in_front]
    uv = np.floor(camera.project(cam)).astype(np.int64)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    uv, z = uv[inside], -cam[inside, 2]
    padded = np.pad(hits.depth, 1, constant_values=np.inf)
    # Visible when some pixel of the 3x3 neighbourhood sees a surface at the corner's depth.
    nearest = np.full(len(z), np.inf)
    for dr in range(3):
        for dc in range(3):
            nearest = np.minimum(nearest, np.abs(padded[uv[:, 1] + dr, uv[:, 0] + dc] - z))
    visible = nearest <= 0.02 * z + 0.01
    return np.unique(np.stack([uv[visible, 1], uv[visible, 0]], axis=1), axis=0)


def blob_map(pixels: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Float32 [H, W] in [0, 1]: a Gaussian blob of peak 1 at each (row, col)."""
    impulses = np.zeros(shape, dtype=np.float32)
    impulses[pixels[:, 0], pixels[:, 1]] = 1.0
    peak = _kernel_centre(sigma) ** 2
    return np.minimum(_blur(impulses, sigma) / peak, 1.0)


def line_map(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Float32 [H, W] in [0, 1]: the binary mask blurred so that a 1-pixel line peaks at about 1."""
    return np.minimum(_blur(mask.astype(np.float32), sigma) / _kernel_centre(sigma), 1.0)


def _kernel_size(sigma: float) -> int:
    return 2 * int(np.ceil(3 * sigma)) + 1


def _kernel_centre(sigma: float) -> float:
    size = _kernel_size(sigma)
    return float(cv2.getGaussianKernel(size, sigma)[size // 2, 0])


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    size = _kernel_size(sigma)
    return cv2.GaussianBlur(image, (size, size), sigma, borderType=cv2.BORDER_CONSTANT)
