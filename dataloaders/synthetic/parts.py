"""Objects as parts in a local frame (floor at y = 0, back towards -z), placed into the world with a yaw."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .scene import Box, Cylinder, Material, Primitive, Sphere


@dataclass
class Part:
    shape: str  # "box" | "cylinder" | "sphere"
    kind: str
    center: tuple[float, float, float]  # local (x, y, z); cylinders use x, z only
    size: tuple[float, ...]  # box: half extents; cylinder: (y0, y1, radius); sphere: (radius,)
    material: Material
    see_through: bool = False


@dataclass
class Thing:
    """An object before placement: its parts, footprint half extents (x, z) and surfaces others can stand on."""

    parts: list[Part]
    half_x: float
    half_z: float
    tops: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # (x, z, hx, hz, y)

    @property
    def radius(self) -> float:
        return float(np.hypot(self.half_x, self.half_z))


def local_to_world(x: float, z: float, yaw: float, lx: float, lz: float) -> tuple[float, float]:
    """Same rotation convention as scene.Box: a yaw turns local +z towards world -x."""
    c, s = np.cos(yaw), np.sin(yaw)
    return x + c * lx + s * lz, z - s * lx + c * lz


def realise(thing: Thing, x: float, z: float, yaw: float, y: float = 0.0, unlabelled: bool = False) -> list[Primitive]:
    """World primitives of `thing` standing at (x, y, z) and turned by `yaw`."""
    prims: list[Primitive] = []
    for part in thing.parts:
        wx, wz = local_to_world(x, z, yaw, part.center[0], part.center[2])
        flags = dict(material=part.material, unlabelled=unlabelled, see_through=part.see_through)
        if part.shape == "box":
            prims.append(Box(part.kind, (wx, y + part.center[1], wz), part.size, yaw, **flags))
        elif part.shape == "cylinder":
            y0, y1, radius = part.size
            prims.append(Cylinder(part.kind, wx, wz, y + y0, y + y1, radius, **flags))
        elif part.shape == "sphere":
            prims.append(Sphere(part.kind, (wx, y + part.center[1], wz), part.size[0], **flags))
        else:
            raise ValueError(f"unknown part shape {part.shape!r}: expected box, cylinder or sphere")
    return prims


def box(kind: str, material: Material, x: float, y0: float, z: float, width: float, height: float,
        depth: float, see_through: bool = False) -> Part:
    """Box part standing on height y0 with full sizes (width along x, height, depth along z)."""
    return Part("box", kind, (x, y0 + height / 2, z), (width / 2, height / 2, depth / 2), material, see_through)


def cylinder(kind: str, material: Material, x: float, z: float, y0: float, y1: float, radius: float) -> Part:
    return Part("cylinder", kind, (x, 0.0, z), (y0, y1, radius), material)


def sphere(kind: str, material: Material, x: float, y: float, z: float, radius: float) -> Part:
    return Part("sphere", kind, (x, y, z), (radius,), material)
