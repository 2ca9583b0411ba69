"""Targets of the known-answer sharing benchmark (docs/known_answer.md), made from the NYU v2 layout's scenes.

Each item is the `nyu_v2` item of the same (seed, split, index), byte for byte (img, seg, normal, depth), plus
four targets whose right sharing with the ordinary tasks is known by construction:

* `seg_perm` (duplicate of seg): SEG_PERMUTATION[seg], a fixed bijection of the 40 NYU class ids (one 40-cycle,
  so no class keeps its id); the ignore label 255 stays 255. It carries exactly the information of seg.
* `texture` (unrelated to seg): the procedural pattern of the surface each pixel sees (0 plain, 1 noise,
  2 stripes, 3 checker; 255 where no surface is hit). The generator draws a material's pattern independently of
  the object's kind, so it tells nothing about the class, and the class tells nothing about it.
* `blur` (low-level): the image's grey level (ITU-R 601 luma of the 8-bit RGB) blurred by a Gaussian of
  sigma = width / 64 pixels (2 px at 128 wide), 8-bit. A linear filter of the input: a few convolutions.
* `noise` (unlearnable): uniform 8-bit noise, i.i.d. per pixel, from its own random stream
  (seed, split code, index, NOISE_STREAM): independent of the scene, the image and every other target.

Loaders map blur and noise to [-1, 1] (value / 127.5 - 1), like Taskonomy's edge maps.
"""
from __future__ import annotations

import cv2
import numpy as np

from .classes import NYU40_CLASSES, NYU_IGNORE
from .samples import make_sample
from .scene import CHECKER, NOISE, PLAIN, STRIPES, Scene

NUM_SEG_CLASSES = len(NYU40_CLASSES)
PERMUTATION_SEED = 2020  # fixes SEG_PERMUTATION forever: datasets built by any version agree
NOISE_STREAM = 7  # fourth word of the noise generator's seed; item_rng uses three words
TEXTURE_CLASSES = {PLAIN: "plain", NOISE: "noise", STRIPES: "stripes", CHECKER: "checker"}
TEXTURE_IGNORE = 255
BLUR_SIGMA_PER_WIDTH = 1.0 / 64.0  # sigma in pixels = width / 64
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB weights of the grey level
EXTRA_TARGETS = ("seg_perm", "texture", "blur", "noise")


def _one_cycle_permutation(n: int, seed: int) -> np.ndarray:
    """A random permutation of 0..n-1 made of a single n-cycle: a bijection without fixed points."""
    order = np.random.default_rng(seed).permutation(n)
    permutation = np.empty(n, dtype=np.int64)
    permutation[order] = np.roll(order, -1)  # order[i] -> order[i + 1]
    return permutation


SEG_PERMUTATION = _one_cycle_permutation(NUM_SEG_CLASSES, PERMUTATION_SEED)


def permute_segmentation(seg: np.ndarray) -> np.ndarray:
    """uint8 labels 0..39 mapped through SEG_PERMUTATION; the ignore label 255 is kept."""
    lookup = np.full(256, NYU_IGNORE, dtype=np.uint8)
    lookup[:NUM_SEG_CLASSES] = SEG_PERMUTATION
    if np.any((seg >= NUM_SEG_CLASSES) & (seg != NYU_IGNORE)):
        raise ValueError(f"permute_segmentation: labels must be 0..{NUM_SEG_CLASSES - 1} or {NYU_IGNORE}, got "
                         f"{sorted(set(np.unique(seg).tolist()))[:8]}")
    return lookup[seg]


def texture_labels(scene: Scene, prim_id: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: the pattern code of the material each pixel sees, TEXTURE_IGNORE where nothing is hit."""
    patterns = np.array([p.material.pattern for p in scene.primitives] + [TEXTURE_IGNORE], dtype=np.uint8)
    return patterns[prim_id]  # prim_id -1 (no hit) reads the appended ignore entry


def blur_target(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: the grey level of the 8-bit RGB image, Gaussian-blurred (sigma = width / 64 pixels)."""
    grey = image_rgb.astype(np.float32) @ LUMA
    sigma = max(1.0, image_rgb.shape[1] * BLUR_SIGMA_PER_WIDTH)
    size = 2 * int(np.ceil(3 * sigma)) + 1
    # BORDER_REFLECT: an image border is no edge, so the blur keeps the grey level there.
    blurred = cv2.GaussianBlur(grey, (size, size), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def noise_rng(seed: int, split_code: int, index: int) -> np.random.Generator:
    """The noise target's own generator: a stream separate from the item's scene and rendering."""
    return np.random.default_rng([seed, split_code, index, NOISE_STREAM])


def noise_target(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 [H, W] uniform on 0..255, i.i.d. per pixel."""
    return rng.integers(0, 256, size=(height, width), dtype=np.uint8)


def known_answer_arrays(item_rng: np.random.Generator, noise: np.random.Generator, height: int,
                        width: int) -> dict[str, np.ndarray]:
    """The arrays of one item: the `nyu_v2` sample drawn from `item_rng` plus the four known-answer targets."""
    sample = make_sample("nyu_v2", item_rng, height, width)
    arrays = dict(sample.arrays)
    arrays["seg_perm"] = permute_segmentation(arrays["seg"])
    arrays["texture"] = texture_labels(sample.scene, sample.rendering.hits.prim_id)
    arrays["blur"] = blur_target(arrays["img"])
    arrays["noise"] = noise_target(noise, height, width)
    return arrays


def dataset_info() -> dict:
    """What the targets were made with (written beside the index as known_answer_info.json)."""
    return {
        "seg_permutation": SEG_PERMUTATION.tolist(),
        "texture_classes": {str(code): name for code, name in TEXTURE_CLASSES.items()},
        "texture_ignore": TEXTURE_IGNORE,
        "blur_sigma": "max(1, width / 64) pixels, on the ITU-R 601 grey level of the 8-bit RGB image",
        "noise": f"uniform 0..255 i.i.d. per pixel from numpy default_rng([seed, split code, index, {NOISE_STREAM}])",
        "loader_scaling": "blur and noise: value / 127.5 - 1 (in [-1, 1]); 255 pads the train crops (ignored)",
    }
