"""One rendered scene encoded in each dataset's label formats (arrays only; writing files is layouts.py's job).

Units and encodings:
* NYU v2: depth = z-depth in metres; normals in the camera frame (x right, y up, z towards the camera), stored as
  RGB = round((n + 1) * 127.5) with R=x, G=y, B=z; invalid normals = (255, 255, 255).
* CityScapes: depth = 1 / z (z-depth in metres), a normalised disparity (disparity with baseline x focal = 1 m px);
  0 = invalid (sky, ego vehicle).
* Taskonomy: depth = round(z * 512) as 16-bit (1/512 m units), 65535 = invalid; keypoints and occlusion edges as
  16-bit maps whose raw/2^16 ranges are [0, 0.005] and [0, 0.08], the ranges the loader clips to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .annotate import blob_map, line_map, occlusion_edges, visible_keypoints
from .classes import (CITYSCAPES_19_TO_7, CITYSCAPES_7_TO_2, CITYSCAPES_IGNORE, INDOOR_KINDS, NYU_IGNORE,
                      STREET_KINDS, class_lookup)
from .indoor import indoor_scene
from .render import Rendering, base_colour, render_scene
from .scene import Scene
from .street import street_scene

NYU_FAR_INVALID = 9.5  # metres: the depth sensor gives no normals beyond this
TASKONOMY_DEPTH_SCALE = 512.0  # raw units per metre
TASKONOMY_DEPTH_INVALID = 65535
TASKONOMY_DEPTH_MAX_VALID = 64499  # the loader's depth_mask is raw < 64500
KEYPOINT_RAW_MAX = 327  # 0.005 * 2^16
EDGE_RAW_MAX = 5242  # 0.08 * 2^16
SCENE_KIND = {"nyu_v2": "indoor", "nyu_v2_samples": "indoor", "taskonomy": "indoor", "cityscapes": "street"}


def focal_length(layout: str, height: int, width: int) -> float:
    """Focal length in pixels per layout: NYU's Kinect (518.86 px at 640 wide), CityScapes' camera (2262.52 px at
    2048 wide), Taskonomy a 60 degree horizontal field of view; scaled with the image width."""
    if layout in ("nyu_v2", "nyu_v2_samples"):
        return 518.857901 * width / 640.0
    if layout == "cityscapes":
        return 2262.52 * width / 2048.0
    if layout == "taskonomy":
        return width / 2.0 / np.tan(np.radians(30.0))
    raise ValueError(f"unknown layout {layout!r}: expected one of {sorted(SCENE_KIND)}")


@dataclass
class Sample:
    arrays: dict[str, np.ndarray]  # the files' contents, keyed by the layout's label names
    scene: Scene
    rendering: Rendering


def make_sample(layout: str, rng: np.random.Generator, height: int, width: int) -> Sample:
    """Build, render and encode one random scene for `layout`."""
    focal = focal_length(layout, height, width)
    builder = street_scene if SCENE_KIND[layout] == "street" else indoor_scene
    scene = builder(rng, height, width, focal)
    rendering = render_scene(scene, rng)
    encode = {"cityscapes": _cityscapes, "taskonomy": _taskonomy}.get(layout, _nyu)
    return Sample(encode(scene, rendering, rng), scene, rendering)


def encode_normals(normal_cam: np.ndarray) -> np.ndarray:
    """Unit normals [H, W, 3] -> uint8 RGB (n + 1) * 127.5 (R=x, G=y, B=z)."""
    return np.clip(np.rint((normal_cam + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _frame(shape: tuple[int, int], width: int) -> np.ndarray:
    """Boolean mask of an outer frame `width` pixels wide."""
    mask = np.ones(shape, dtype=bool)
    mask[width:shape[0] - width, width:shape[1] - width] = False
    return mask


def nyu_frame_widths(width: int) -> tuple[int, int, int]:
    """Pixel widths of the NYU frames: seg ignore border, white (invalid) normal border, grey normal ring inside it
    (8, 16 and 1 pixels at 640 wide, at least 1)."""
    return max(1, round(width * 8 / 640)), max(1, round(width * 16 / 640)), max(1, round(width / 640))


def _nyu(scene: Scene, rendering: Rendering, rng: np.random.Generator) -> dict[str, np.ndarray]:
    hits = rendering.hits
    h, w = hits.depth.shape
    ids = hits.prim_id
    seg_border, white_border, grey_width = nyu_frame_widths(w)
    classes = class_lookup(scene.kinds(), {k: v[0] for k, v in INDOOR_KINDS.items()}, NYU_IGNORE)[ids]
    classes[scene.flags("unlabelled")[ids]] = NYU_IGNORE
    classes[_frame((h, w), seg_border)] = NYU_IGNORE

    normal = encode_normals(hits.normal_cam)
    invalid = (ids < 0) | scene.flags("see_through")[ids] | (hits.depth > NYU_FAR_INVALID)
    normal[_frame((h, w), white_border + grey_width)] = 127  # the zero-normal frame of the real samples
    normal[invalid | _frame((h, w), white_border)] = 255
    depth = np.where(np.isfinite(hits.depth), hits.depth, 0.0).astype(np.float32)
    return {"img": _to_uint8(rendering.image), "seg": classes.astype(np.uint8), "normal": normal, "depth": depth}


def _taskonomy(scene: Scene, rendering: Rendering, rng: np.random.Generator) -> dict[str, np.ndarray]:
    hits = rendering.hits
    h, w = hits.depth.shape
    ids = hits.prim_id
    raw_seg = class_lookup(scene.kinds(), {k: v[1] + 1 for k, v in INDOOR_KINDS.items()}, 0)[ids]
    raw_seg[scene.flags("unlabelled")[ids] | scene.flags("see_through")[ids]] = 0
    finite = np.isfinite(hits.depth)
    depth = np.minimum(np.rint(np.where(finite, hits.depth, 0.0) * TASKONOMY_DEPTH_SCALE), TASKONOMY_DEPTH_MAX_VALID)
    depth[~finite | scene.flags("see_through")[ids]] = TASKONOMY_DEPTH_INVALID
    scale = w / 256.0
    keypoints = blob_map(visible_keypoints(scene, hits), (h, w), sigma=max(1.0, 2.0 * scale))
    edges = line_map(occlusion_edges(scene, hits), sigma=max(0.7, 1.0 * scale))
    return {
        "img": _to_uint8(rendering.image),
        "seg": raw_seg.astype(np.uint8),
        "sn": encode_normals(hits.normal_cam),
        "depth": depth.astype(np.uint16),
        "keypoint": np.rint(keypoints * KEYPOINT_RAW_MAX).astype(np.uint16),
        "edge": np.rint(edges * EDGE_RAW_MAX).astype(np.uint16),
    }


def ego_vehicle_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean [H, W]: the car's bonnet at the bottom of the frame (void in CityScapes), with a curved top."""
    top = height * (1.0 - rng.uniform(0.06, 0.1))
    bulge = height * rng.uniform(0.02, 0.04)
    col = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    rows = np.arange(height)[:, None] + 0.5
    return rows >= top + bulge * col[None, :] ** 2


def _cityscapes(scene: Scene, rendering: Rendering, rng: np.random.Generator) -> dict[str, np.ndarray]:
    hits = rendering.hits
    h, w = hits.depth.shape
    ids = hits.prim_id
    label19 = class_lookup(scene.kinds(), STREET_KINDS, STREET_KINDS["sky"])[ids]
    ego = ego_vehicle_mask(h, w, rng)
    label19[ego] = CITYSCAPES_IGNORE
    valid = label19 >= 0
    label7 = np.where(valid, CITYSCAPES_19_TO_7[np.maximum(label19, 0)], CITYSCAPES_IGNORE)
    label2 = np.where(valid, CITYSCAPES_7_TO_2[np.maximum(label7, 0)], CITYSCAPES_IGNORE)
    finite = np.isfinite(hits.depth) & ~ego
    disparity = np.where(finite, 1.0 / np.where(finite, hits.depth, 1.0), 0.0)

    image = rendering.image.copy()
    shade = np.linspace(0.6, 0.3, h, dtype=np.float32)[:, None, None]  # the bonnet darkens towards the bottom
    bonnet = base_colour("car").astype(np.float32) * rng.uniform(0.3, 1.0) * shade
    image[ego] = np.clip(np.broadcast_to(bonnet, image.shape)[ego]
                         + rng.normal(0, 0.01, (int(ego.sum()), 3)).astype(np.float32), 0, 1)
    return {
        "img": image.astype(np.float32),
        "depth": disparity.astype(np.float32)[..., None],
        "label2": label2.astype(np.int64),
        "label7": label7.astype(np.int64),
        "label19": label19.astype(np.int64),
    }
