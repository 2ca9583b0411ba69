"""Appearance: procedural materials, Lambertian shading, sky, exposure and sensor noise."""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from .scene import CHECKER, NOISE, PLAIN, STRIPES, Hits, Material, Scene, cast

# A few kinds get a characteristic base colour; every other kind gets a fixed pseudo-random one. Per-object colours
# scatter widely around the base, so colour distributions of different classes overlap.
_BASE_COLOURS = {
    "road": (0.35, 0.34, 0.36), "sidewalk": (0.55, 0.52, 0.5), "vegetation": (0.25, 0.45, 0.18),
    "terrain": (0.45, 0.5, 0.25), "floor": (0.55, 0.42, 0.3), "ceiling": (0.85, 0.85, 0.82),
    "wall": (0.75, 0.72, 0.66), "window": (0.8, 0.88, 0.95),
}
_PATTERN_CDF = np.cumsum([0.3, 0.35, 0.15, 0.2])[:-1]  # PLAIN, NOISE, STRIPES, CHECKER
TAU = np.float32(2 * np.pi)


@functools.lru_cache(maxsize=None)
def _base_colour(kind: str) -> tuple[float, float, float]:
    if kind in _BASE_COLOURS:
        return _BASE_COLOURS[kind]
    # crc32, not hash(): Python salts str hashes per process, which would break reproducibility.
    return tuple(np.random.default_rng(zlib.crc32(kind.encode())).uniform(0.15, 0.85, size=3))


def base_colour(kind: str) -> np.ndarray:
    """Typical RGB albedo of a kind (fixed across runs)."""
    return np.array(_base_colour(kind))


def random_material(kind: str, rng: np.random.Generator, spread: float = 0.15, emission: float = 0.0,
                    patterned: bool = True) -> Material:
    """Material whose colour is drawn around the kind's base colour (overlapping between kinds)."""
    gauss, uniform = rng.standard_normal(6), rng.random(9)  # one draw each: this runs for every primitive
    colour = np.minimum(np.maximum(base_colour(kind) + spread * gauss[:3], 0.03), 0.97)
    if uniform[0] < 0.2:  # a contrasting second colour
        colour2 = 0.05 + 0.9 * uniform[6:9]
    else:  # a darker shade of the first
        colour2 = np.minimum(np.maximum(colour * (0.5 + 0.45 * uniform[1]) + 0.04 * gauss[3:6], 0.02), 0.98)
    pattern = int(np.searchsorted(_PATTERN_CDF, uniform[2], side="right")) if patterned else PLAIN
    return Material(colour, colour2, pattern, frequency=0.5 + 3.5 * float(uniform[3]),
                    angle=float(np.pi * uniform[4]), phase=float(TAU * uniform[5]), emission=emission)


@dataclass
class Rendering:
    hits: Hits
    image: np.ndarray  # [H, W, 3] float32 RGB in [0, 1]


def render_scene(scene: Scene, rng: np.random.Generator) -> Rendering:
    """Ray cast the scene and shade it into a noisy RGB image."""
    hits = cast(scene)
    h, w = hits.depth.shape
    colour = np.zeros((3, h * w), dtype=np.float32)
    if len(hits.index):
        ids = hits.prim_id.ravel()[hits.index]
        colour[:, hits.index] = _albedo(scene, ids, hits.uv) * _shading(scene, ids, hits)
    if scene.has_sky and len(hits.index) < h * w:
        missed = np.flatnonzero(hits.prim_id.ravel() < 0)
        colour[:, missed] = _sky(hits.rays_world[:, missed], rng)
    # Auto-exposure towards a mid-grey mean keeps dark and bright scenes in range.
    colour *= np.float32(np.clip(0.45 / max(float(colour.mean()), 1e-6), 0.5, 3.0))
    image = colour.reshape(3, h, w).transpose(1, 2, 0).copy()
    image *= _vignette(h, w, strength=rng.uniform(0.0, 0.25))
    noise_sigma = np.float32(rng.uniform(0.004, 0.02))
    image += noise_sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return Rendering(hits, np.clip(image, 0.0, 1.0, out=image))


def _albedo(scene: Scene, ids: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Albedo [3, K] of hit pixels with primitive ids [K] and texture coordinates [2, K]."""
    # float32: the transcendental functions run several times faster than in float64.
    table = np.stack([p.material.row() for p in scene.primitives]).T.astype(np.float32)  # [11, n_prims]
    uv = uv.astype(np.float32)
    mix = np.zeros(len(ids), dtype=np.float32)
    patterns = table[6].astype(np.int64)[ids]
    for pattern in (NOISE, STRIPES, CHECKER):
        select = np.flatnonzero(patterns == pattern)
        if len(select) == 0:
            continue
        sub = ids[select]
        u, v = uv[0, select], uv[1, select]
        freq, angle, phase = table[7][sub], table[8][sub], table[9][sub]
        if pattern == CHECKER:
            mix[select] = np.mod(np.floor(freq * u + phase) + np.floor(freq * v), 2.0)
            continue
        cos, sin = np.cos(angle), np.sin(angle)
        along = u * cos + v * sin
        if pattern == STRIPES:
            mix[select] = 0.5 + 0.5 * np.tanh(np.float32(3.0) * np.sin(TAU * freq * along + phase))
        else:  # smooth pseudo-noise: three incommensurate waves in different directions
            across = v * cos - u * sin
            waves = (np.sin(TAU * freq * along + phase) + np.sin(np.float32(1.7) * TAU * freq * across + 2 * phase)
                     + np.sin(np.float32(2.9) * TAU * freq * (along + across) + 3 * phase))
            mix[select] = 0.5 + waves / np.float32(6.0)
    colour, colour2 = table[0:3][:, ids], table[3:6][:, ids]
    return colour + (colour2 - colour) * mix


def _shading(scene: Scene, ids: np.ndarray, hits: Hits) -> np.ndarray:
    """Ambient + Lambertian light + emission, [3, K]."""
    normals, points = hits.normals.astype(np.float32), hits.points.astype(np.float32)
    light = np.full((3, len(ids)), scene.ambient, dtype=np.float32)
    for source in scene.lights:
        if source.position is None:
            cosine = source.direction.astype(np.float32) @ normals
        else:
            to_light = source.position.astype(np.float32)[:, None] - points
            dist2 = np.einsum("ij,ij->j", to_light, to_light)
            cosine = np.einsum("ij,ij->j", normals, to_light) / np.sqrt(dist2) / (1.0 + source.falloff * dist2)
        light += source.intensity.astype(np.float32)[:, None] * np.maximum(cosine, np.float32(0.0))
    emission = np.array([p.material.emission for p in scene.primitives], dtype=np.float32)[ids]
    return light + emission


def _sky(rays: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sky colour [3, M] for world rays [3, M]: horizon-to-zenith gradient with soft cloud bands."""
    elevation = rays[1] / np.sqrt(np.einsum("ij,ij->j", rays, rays))
    blend = np.clip(elevation * 3.0, 0.0, 1.0)
    horizon = (np.array([0.85, 0.88, 0.9]) + rng.normal(0, 0.03, 3))[:, None]
    zenith = (np.array([0.35, 0.55, 0.85]) + rng.normal(0, 0.05, 3))[:, None]
    flat = rays[:2] / np.maximum(-rays[2], 1e-3)  # sky-plane coordinates for the cloud waves
    phase = rng.uniform(0, TAU, 2)
    clouds = 0.5 + 0.25 * (np.sin(3.0 * flat[0] + phase[0]) + np.sin(7.0 * flat[1] + phase[1]))
    colour = horizon + (zenith - horizon) * blend
    return colour + 0.15 * clouds * (1.0 - colour)


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    y = (np.arange(height) + 0.5) / height - 0.5
    x = (np.arange(width) + 0.5) / width - 0.5
    return (1.0 - strength * 2.0 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)[..., None]
