"""Analytic primitives (planes, yawed boxes, spheres, vertical cylinders) and a vectorised numpy ray caster.

Frames: the world is y-up. The camera frame is OpenGL-like: x right, y up, z towards the viewer, so the camera
looks along -z. Pixel rays are *not* normalised: each has camera-frame z component -1, so the ray parameter t of
a hit is its z-depth (distance along the optical axis), which is the depth NYU v2 stores.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR = 1e-3  # closest accepted hit (metres of z-depth)
PLANE, BOX, SPHERE, CYLINDER = 0, 1, 2, 3
PLAIN, NOISE, STRIPES, CHECKER = 0, 1, 2, 3  # texture patterns
NUM_PARAMS = 10  # width of the per-primitive geometry parameter rows
_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
_EDGES = np.array([(i, i | bit) for bit in (1, 2, 4) for i in range(8) if not i & bit])  # corner pairs of box edges


@dataclass
class Material:
    """Albedo pattern of a surface: colour blended towards colour2 by a procedural pattern in [0, 1]."""

    colour: np.ndarray
    colour2: np.ndarray
    pattern: int = PLAIN
    frequency: float = 1.0  # pattern cycles per metre of surface
    angle: float = 0.0  # stripe direction in the surface (radians)
    phase: float = 0.0
    emission: float = 0.0  # added to the shading (light coming through windows)

    def row(self) -> np.ndarray:
        return np.array([*self.colour, *self.colour2, self.pattern, self.frequency, self.angle, self.phase,
                         self.emission], dtype=np.float64)


@dataclass
class Camera:
    """Pinhole camera: square pixels, principal point at the image centre, pose = camera-to-world rotation."""

    height: int
    width: int
    focal: float
    position: np.ndarray
    rotation: np.ndarray  # columns are the camera x, y, z axes in world coordinates

    def pixel_rays(self) -> np.ndarray:
        """Camera-frame ray per pixel centre, [H, W, 3] with z = -1."""
        rays = np.empty((self.height, self.width, 3))
        rays[..., 0] = ((np.arange(self.width) + 0.5 - self.width / 2) / self.focal)[None, :]
        rays[..., 1] = (-(np.arange(self.height) + 0.5 - self.height / 2) / self.focal)[:, None]
        rays[..., 2] = -1.0
        return rays

    def rays_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """World rays [3, ...] through continuous pixel positions (pixel (r, c) has its centre at r + 0.5, c + 0.5)."""
        x = (np.asarray(cols, dtype=np.float64) + 0.5 - self.width / 2) / self.focal
        y = -(np.asarray(rows, dtype=np.float64) + 0.5 - self.height / 2) / self.focal
        r = self.rotation
        return np.stack([r[i, 0] * x + r[i, 1] * y - r[i, 2] for i in range(3)])

    def world_rays(self) -> np.ndarray:
        """The pixel rays in world coordinates, [3, H, W]."""
        x = (np.arange(self.width) + 0.5 - self.width / 2) / self.focal
        y = -(np.arange(self.height) + 0.5 - self.height / 2) / self.focal
        r = self.rotation
        return (r[:, 0, None, None] * x[None, None, :] + r[:, 1, None, None] * y[None, :, None]
                - r[:, 2, None, None])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> camera-frame points [N, 3]."""
        return (points - self.position) @ self.rotation

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points [N, 3] (z < 0) -> continuous pixel coordinates (u, v) [N, 2]."""
        depth = -points_cam[:, 2]
        u = self.width / 2 + self.focal * points_cam[:, 0] / depth
        v = self.height / 2 - self.focal * points_cam[:, 1] / depth
        return np.stack([u, v], axis=1)


def rotation_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation: yaw about world y, then pitch about camera x (negative looks down), then roll."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


class Primitive:
    """A surface with a semantic kind, a material and per-dataset flags."""

    type_code = -1

    def __init__(self, kind: str, material: Material | None = None, unlabelled: bool = False,
                 see_through: bool = False) -> None:
        self.kind = kind
        self.material = material
        self.unlabelled = unlabelled  # NYU leaves it unannotated (seg 255), Taskonomy stores raw 0
        self.see_through = see_through  # windows/mirrors: no valid NYU normal, no valid Taskonomy depth

    def corners(self) -> np.ndarray | None:
        """World-space corners of a bounding box, or None when unbounded."""
        return None

    def keypoints(self) -> np.ndarray:
        """High-curvature world points (box corners) for the keypoint task."""
        return np.zeros((0, 3))

    def params(self) -> np.ndarray:
        raise NotImplementedError

    def intersect(self, o: np.ndarray, d: tuple[np.ndarray, ...], inv: tuple[np.ndarray, ...]) -> np.ndarray:
        """z-depth t of the first hit per ray (inf where missed), for world rays d = (dx, dy, dz) with reciprocals
        inv = (1/dx, 1/dy, 1/dz) of one pixel window. Called under np.errstate(divide/invalid='ignore')."""
        raise NotImplementedError


class Plane(Primitive):
    """Infinite plane {p : normal . p = offset}."""

    type_code = PLANE

    def __init__(self, kind: str, normal, offset: float, **kwargs) -> None:
        super().__init__(kind, **kwargs)
        self.normal = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
        self.offset = float(offset)
        nx, ny, nz = self.normal
        # Two unit tangents: n x e_y (or n x e_x for near-horizontal planes), then n x tangent1.
        t1 = np.array([-nz, 0.0, nx]) if abs(ny) < 0.9 else np.array([0.0, nz, -ny])
        self.tangent1 = t1 / np.sqrt(t1 @ t1)
        t1x, t1y, t1z = self.tangent1
        self.tangent2 = np.array([ny * t1z - nz * t1y, nz * t1x - nx * t1z, nx * t1y - ny * t1x])

    def params(self) -> np.ndarray:
        return np.array([*self.normal, self.offset, *self.tangent1, *self.tangent2])

    def intersect(self, o, d, inv):
        n = self.normal
        t = (self.offset - n @ o) / (n[0] * d[0] + n[1] * d[1] + n[2] * d[2])
        return np.where(t > NEAR, t, np.inf)


class Box(Primitive):
    """Box with centre, half extents (x, y, z) and a yaw (rotation about world y)."""

    type_code = BOX

    def __init__(self, kind: str, center, half, yaw: float = 0.0, **kwargs) -> None:
        super().__init__(kind, **kwargs)
        self.center = np.asarray(center, dtype=np.float64)
        self.half = np.asarray(half, dtype=np.float64)
        self.cos, self.sin = float(np.cos(yaw)), float(np.sin(yaw))
        self.axis_aligned = abs(self.sin) < 1e-9
        local = _CORNER_SIGNS * self.half
        self._corners = np.stack([self.cos * local[:, 0] + self.sin * local[:, 2], local[:, 1],
                                  -self.sin * local[:, 0] + self.cos * local[:, 2]], axis=1) + self.center

    def params(self) -> np.ndarray:
        return np.array([*self.center, *self.half, self.cos, self.sin, 0.0, 0.0])

    def keypoints(self) -> np.ndarray:
        return self._corners

    def corners(self) -> np.ndarray:
        return self._corners

    def intersect(self, o, d, inv):
        rel = o - self.center
        if self.axis_aligned:  # yaw 0 or pi: a box is symmetric, so no rotation is needed
            origin, inverse = rel, inv
        else:
            c, s = self.cos, self.sin
            origin = (c * rel[0] - s * rel[2], rel[1], s * rel[0] + c * rel[2])
            inverse = (1.0 / (c * d[0] - s * d[2]), inv[1], 1.0 / (s * d[0] + c * d[2]))
        t_near = t_far = None
        for axis in range(3):  # slab test
            t1 = inverse[axis] * (-self.half[axis] - origin[axis])
            t2 = inverse[axis] * (self.half[axis] - origin[axis])
            if t_near is None:
                t_near, t_far = np.minimum(t1, t2), np.maximum(t1, t2)
            else:
                np.maximum(t_near, np.minimum(t1, t2), out=t_near)
                np.minimum(t_far, np.maximum(t1, t2), out=t_far)
        return np.where((t_near <= t_far) & (t_near > NEAR), t_near, np.inf)


class Sphere(Primitive):
    type_code = SPHERE

    def __init__(self, kind: str, center, radius: float, **kwargs) -> None:
        super().__init__(kind, **kwargs)
        self.center = np.asarray(center, dtype=np.float64)
        self.radius = float(radius)
        self._corners = self.center + _CORNER_SIGNS * self.radius

    def params(self) -> np.ndarray:
        return np.array([*self.center, self.radius, 0, 0, 0, 0, 0, 0])

    def corners(self) -> np.ndarray:
        return self._corners

    def intersect(self, o, d, inv):
        oc = o - self.center
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        b = d[0] * oc[0] + d[1] * oc[1] + d[2] * oc[2]
        disc = b * b - a * (oc @ oc - self.radius**2)
        t = (-b - np.sqrt(disc)) / a
        return np.where(t > NEAR, t, np.inf)  # NaN (missed) compares False


class Cylinder(Primitive):
    """Capped cylinder with a vertical axis through (x, z), spanning heights y0..y1."""

    type_code = CYLINDER

    def __init__(self, kind: str, x: float, z: float, y0: float, y1: float, radius: float, **kwargs) -> None:
        super().__init__(kind, **kwargs)
        self.x, self.z, self.y0, self.y1, self.radius = float(x), float(z), float(y0), float(y1), float(radius)
        low = np.array([self.x - radius, self.y0, self.z - radius])
        high = np.array([self.x + radius, self.y1, self.z + radius])
        self._corners = np.where(_CORNER_SIGNS > 0, high, low)

    def params(self) -> np.ndarray:
        return np.array([self.x, self.z, self.y0, self.y1, self.radius, 0, 0, 0, 0, 0])

    def corners(self) -> np.ndarray:
        return self._corners

    def intersect(self, o, d, inv):
        dx, dy, dz = d
        ox, oz, r2 = o[0] - self.x, o[2] - self.z, self.radius**2
        a = dx * dx + dz * dz
        b = dx * ox + dz * oz
        disc = b * b - a * (ox * ox + oz * oz - r2)
        t_side = (-b - np.sqrt(disc)) / a
        y = o[1] + t_side * dy
        t = np.where((t_side > NEAR) & (y >= self.y0) & (y <= self.y1), t_side, np.inf)
        for y_cap in (self.y0, self.y1):
            t_cap = (y_cap - o[1]) * inv[1]
            x_cap, z_cap = ox + t_cap * dx, oz + t_cap * dz
            on_cap = (t_cap > NEAR) & (x_cap * x_cap + z_cap * z_cap <= r2) & (t_cap < t)
            t = np.where(on_cap, t_cap, t)
        return t


@dataclass
class Light:
    """Directional light (position None) or point light; intensity per RGB channel."""

    intensity: np.ndarray
    direction: np.ndarray | None = None  # unit vector towards the light
    position: np.ndarray | None = None
    falloff: float = 0.05  # point light: 1 / (1 + falloff * distance^2)


@dataclass
class Scene:
    primitives: list[Primitive]
    camera: Camera
    lights: list[Light]
    ambient: float = 0.25
    extra_keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # e.g. room corners
    has_sky: bool = False

    def kinds(self) -> list[str]:
        return [p.kind for p in self.primitives]

    def flags(self, name: str) -> np.ndarray:
        """Boolean flag per primitive plus False for 'no hit' (index -1)."""
        return np.array([getattr(p, name) for p in self.primitives] + [False])


@dataclass
class Hits:
    """Ray casting result. Image-shaped maps plus flat per-hit arrays (structure of arrays, for speed).

    prim_id is -1 and depth inf where no primitive is hit; normal_cam is 0 there.
    """

    depth: np.ndarray  # [H, W] z-depth
    prim_id: np.ndarray  # [H, W] int64 index into scene.primitives
    normal_cam: np.ndarray  # [H, W, 3] unit normals in the camera frame, facing the camera
    rays_world: np.ndarray  # [3, H*W]
    index: np.ndarray  # [K] flat pixel indices of the hits
    points: np.ndarray  # [3, K] world hit points
    normals: np.ndarray  # [3, K] world unit normals, facing the camera
    uv: np.ndarray  # [2, K] surface texture coordinates (metres)
    rects: list[tuple[int, int, int, int] | None]  # per primitive, the pixels (y0, y1, x0, x1) that can see it


def screen_rects(scene: Scene) -> list[tuple[int, int, int, int] | None]:
    """Per primitive, the pixel rectangle (y0, y1, x0, x1) that can see it; None when it is off screen.

    The bounding box of each bounded primitive is clipped against the plane z = -NEAR in front of the camera (its
    corners in front plus the points where its 12 edges cross that plane); the projection of those points bounds
    every visible hit, since hits need t > NEAR.
    """
    camera = scene.camera
    full = (0, camera.height, 0, camera.width)
    rects: list[tuple[int, int, int, int] | None] = [full] * len(scene.primitives)
    bounded = [i for i, p in enumerate(scene.primitives) if p.corners() is not None]
    if not bounded:
        return rects
    corners = camera.to_camera(np.concatenate([scene.primitives[i].corners() for i in bounded])).reshape(-1, 8, 3)
    a, b = corners[:, _EDGES[:, 0]], corners[:, _EDGES[:, 1]]  # [n, 12, 3] edge end points
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (-NEAR - a[..., 2]) / (b[..., 2] - a[..., 2])
    crossing = a + s[..., None] * (b - a)
    crossing_ok = (s >= 0) & (s <= 1)
    points = np.concatenate([corners, crossing], axis=1)
    valid = np.concatenate([corners[..., 2] <= -NEAR, crossing_ok], axis=1)
    depth = np.where(valid, -points[..., 2], 1.0)
    u = np.clip(camera.width / 2 + camera.focal * points[..., 0] / depth, -1.0, camera.width + 1.0)
    v = np.clip(camera.height / 2 - camera.focal * points[..., 1] / depth, -1.0, camera.height + 1.0)
    big = camera.width + camera.height + 10.0
    x0 = np.floor(np.where(valid, u, big).min(axis=1)).astype(np.int64) - 1
    x1 = np.ceil(np.where(valid, u, -big).max(axis=1)).astype(np.int64) + 2
    y0 = np.floor(np.where(valid, v, big).min(axis=1)).astype(np.int64) - 1
    y1 = np.ceil(np.where(valid, v, -big).max(axis=1)).astype(np.int64) + 2
    x0, y0 = np.maximum(x0, 0), np.maximum(y0, 0)
    x1, y1 = np.minimum(x1, camera.width), np.minimum(y1, camera.height)
    seen = valid.any(axis=1) & (x0 < x1) & (y0 < y1)
    for row, i in enumerate(bounded):
        rects[i] = (int(y0[row]), int(y1[row]), int(x0[row]), int(x1[row])) if seen[row] else None
    return rects


def trace(scene: Scene, rows: np.ndarray, cols: np.ndarray,
          rects: list[tuple[int, int, int, int] | None]) -> np.ndarray:
    """z-depth of the first hit of the rays through continuous pixel positions [N] (inf where nothing is hit).

    `rects` are the primitives' screen rectangles (Hits.rects): a primitive is only tested against the rays inside
    its rectangle.
    """
    origin = scene.camera.position.astype(np.float64)
    directions = scene.camera.rays_at(rows, cols)
    depth = np.full(len(rows), np.inf)
    pixel_rows, pixel_cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverses = 1.0 / directions
        for prim, rect in zip(scene.primitives, rects):
            if rect is None:
                continue
            inside = np.flatnonzero((pixel_rows >= rect[0]) & (pixel_rows < rect[1]) & (pixel_cols >= rect[2])
                                    & (pixel_cols < rect[3]))
            if len(inside) == 0:
                continue
            t = prim.intersect(origin, tuple(directions[:, inside]), tuple(inverses[:, inside]))
            depth[inside] = np.minimum(depth[inside], t)
    return depth


def cast(scene: Scene) -> Hits:
    """Ray cast every pixel against every primitive (z-buffer), then derive normals and texture coordinates."""
    camera = scene.camera
    h, w = camera.height, camera.width
    rays_world = camera.world_rays().reshape(3, h * w)
    directions = rays_world.reshape(3, h, w)
    origin = camera.position.astype(np.float64)
    depth = np.full((h, w), np.inf)
    prim_id = np.full((h, w), -1, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):  # misses and axis-parallel rays give inf/NaN, never hits
        inverses = 1.0 / directions
        rects = screen_rects(scene)
        for index, (prim, rect) in enumerate(zip(scene.primitives, rects)):
            if rect is None:
                continue
            window = np.s_[rect[0]:rect[1], rect[2]:rect[3]]
            d = (directions[0][window], directions[1][window], directions[2][window])
            inv = (inverses[0][window], inverses[1][window], inverses[2][window])
            t = prim.intersect(origin, d, inv)
            closer = t < depth[window]
            np.copyto(depth[window], t, where=closer)
            np.copyto(prim_id[window], index, where=closer)

    flat_ids = prim_id.ravel()
    hit_index = np.flatnonzero(flat_ids >= 0)
    everything_hit = len(hit_index) == flat_ids.size  # indoor scenes: skip the gathers
    ids = flat_ids if everything_hit else flat_ids[hit_index]
    rays = rays_world if everything_hit else rays_world[:, hit_index]
    t = depth.ravel() if everything_hit else depth.ravel()[hit_index]
    points = origin[:, None] + t * rays
    normals, uv = surface_frames(scene, ids, points)
    normals *= np.where(np.einsum("ij,ij->j", normals, rays) > 0, -1.0, 1.0)  # face the camera (room insides)
    normal_cam = np.zeros((3, h * w))
    normal_cam[:, hit_index] = camera.rotation.T @ normals
    normal_cam = normal_cam.reshape(3, h, w).transpose(1, 2, 0)
    return Hits(depth, prim_id, normal_cam, rays_world, hit_index, points, normals, uv, rects)


def surface_frames(scene: Scene, ids: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals [3, K] (orientation not yet fixed) and texture coordinates [2, K] of hit points [3, K]."""
    table = np.stack([p.params() for p in scene.primitives]).T.copy()  # [NUM_PARAMS, n_prims]
    types = np.array([p.type_code for p in scene.primitives], dtype=np.int64)[ids]
    normals = np.zeros_like(points)
    uv = np.zeros((2, points.shape[1]))
    for code, frame in ((PLANE, _plane_frame), (BOX, _box_frame), (SPHERE, _sphere_frame),
                        (CYLINDER, _cylinder_frame)):
        select = np.flatnonzero(types == code)
        if len(select) == 0:
            continue
        sub_ids = ids[select]
        normals[:, select], uv[:, select] = frame(points[:, select], lambda k: table[k][sub_ids])
    return normals, uv


def _plane_frame(p: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    n = np.stack([q(0), q(1), q(2)])
    u = p[0] * q(4) + p[1] * q(5) + p[2] * q(6)
    v = p[0] * q(7) + p[1] * q(8) + p[2] * q(9)
    return n, np.stack([u, v])


def _box_frame(p: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    rx, ry, rz = p[0] - q(0), p[1] - q(1), p[2] - q(2)
    c, s = q(6), q(7)
    lx, lz = c * rx - s * rz, s * rx + c * rz
    ax, ay, az = np.abs(lx) / q(3), np.abs(ry) / q(4), np.abs(lz) / q(5)
    on_x = (ax >= ay) & (ax >= az)  # the face the point lies on
    on_y = ~on_x & (ay >= az)
    on_z = ~on_x & ~on_y
    nlx, nly, nlz = on_x * np.sign(lx), on_y * np.sign(ry), on_z * np.sign(lz)
    normals = np.stack([c * nlx + s * nlz, nly, c * nlz - s * nlx])
    return normals, np.stack([np.where(on_x, lz, lx), np.where(on_y, lz, ry)])


def _sphere_frame(p: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    rel = p - np.stack([q(0), q(1), q(2)])
    normals = rel / np.sqrt(np.einsum("ij,ij->j", rel, rel))
    return normals, np.stack([q(3) * np.arctan2(rel[2], rel[0]), rel[1]])


def _cylinder_frame(p: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    rx, rz, y = p[0] - q(0), p[2] - q(1), p[1]
    rho = np.maximum(np.hypot(rx, rz), 1e-12)
    to_bottom, to_top = np.abs(y - q(2)), np.abs(y - q(3))
    side = np.abs(rho - q(4)) < np.minimum(to_bottom, to_top)
    cap_sign = np.where(to_top < to_bottom, 1.0, -1.0)
    normals = np.stack([np.where(side, rx / rho, 0.0), np.where(side, 0.0, cap_sign), np.where(side, rz / rho, 0.0)])
    uv = np.stack([np.where(side, q(4) * np.arctan2(rz, rx), rx), np.where(side, y, rz)])
    return normals, uv
