"""Random indoor rooms (NYU v2 and Taskonomy): walls/floor/ceiling planes, furniture, small objects, wall items."""
from __future__ import annotations

import numpy as np

from .parts import Thing, box, cylinder, local_to_world, realise, sphere
from .render import random_material
from .scene import Camera, Light, Plane, Primitive, Scene, rotation_yaw_pitch_roll

UNLABELLED_PROB = 0.08  # annotators left this object unlabelled


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


# Furniture builders: local frame, floor at y = 0, back side towards -z (against a wall when placed there).
def _bed(rng):
    m, w, l, h = random_material("bed", rng), _u(rng, 1.0, 1.9), _u(rng, 1.9, 2.2), _u(rng, 0.4, 0.6)
    parts = [box("bed", m, 0, 0, 0, w, h, l), box("bed", m, 0, 0, -l / 2 + 0.04, w, _u(rng, 0.8, 1.2), 0.08)]
    pillow = random_material("pillow", rng)
    for px in ([0.0] if w < 1.3 else [-w / 4, w / 4]):
        parts.append(box("pillow", pillow, px, h, -l / 2 + 0.35, min(0.55, w / 2 - 0.05), 0.14, 0.38))
    return Thing(parts, w / 2, l / 2)


def _table(rng, kind="table"):
    m, w, d, h = random_material(kind, rng), _u(rng, 0.7, 1.8), _u(rng, 0.5, 1.0), _u(rng, 0.7, 0.78)
    parts = [box(kind, m, 0, h - 0.04, 0, w, 0.04, d)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(box(kind, m, sx * (w / 2 - 0.04), 0, sz * (d / 2 - 0.04), 0.05, h - 0.04, 0.05))
    return Thing(parts, w / 2, d / 2, tops=[(0, 0, w / 2 - 0.1, d / 2 - 0.1, h)])


def _chair(rng):
    m, w, seat = random_material("chair", rng), _u(rng, 0.4, 0.5), _u(rng, 0.42, 0.48)
    back_height = _u(rng, 0.35, 0.5)
    parts = [box("chair", m, 0, seat - 0.05, 0, w, 0.05, w),  # seat
             box("chair", m, 0, seat, -w / 2 + 0.03, w, back_height, 0.05)]  # backrest
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(box("chair", m, sx * (w / 2 - 0.03), 0, sz * (w / 2 - 0.03), 0.04, seat - 0.05, 0.04))
    return Thing(parts, w / 2, w / 2)


def _sofa(rng):
    m, w, d = random_material("sofa", rng), _u(rng, 1.4, 2.3), _u(rng, 0.8, 0.95)
    parts = [box("sofa", m, 0, 0, 0, w, 0.42, d), box("sofa", m, 0, 0.42, -d / 2 + 0.1, w, 0.42, 0.2)]
    for sx in (-1, 1):
        parts.append(box("sofa", m, sx * (w / 2 - 0.1), 0.42, 0, 0.2, 0.2, d))
    return Thing(parts, w / 2, d / 2)


def _block(kind, width, height, depth, can_hold=True):
    """Builder of a plain box-shaped piece of furniture (cabinet, dresser, fridge...)."""
    def build(rng):
        w, h, d = _u(rng, *width), _u(rng, *height), _u(rng, *depth)
        tops = [(0, 0, w / 2 - 0.08, d / 2 - 0.08, h)] if can_hold and h < 1.3 else []
        return Thing([box(kind, random_material(kind, rng), 0, 0, 0, w, h, d)], w / 2, d / 2, tops)
    return build


def _lamp(rng):
    m, h, r = random_material("lamp", rng), _u(rng, 1.2, 1.7), _u(rng, 0.14, 0.24)
    parts = [cylinder("lamp", m, 0, 0, 0, 0.03, 0.18), cylinder("lamp", m, 0, 0, 0.03, h, 0.02),
             cylinder("lamp", random_material("lamp", rng), 0, 0, h, h + 0.28, r)]
    return Thing(parts, r, r)


def _toilet(rng):
    m = random_material("toilet", rng)
    parts = [cylinder("toilet", m, 0, 0.1, 0, 0.42, 0.2), box("toilet", m, 0, 0, -0.22, 0.45, 0.8, 0.18)]
    return Thing(parts, 0.25, 0.32)


def _person(rng):
    m, h = random_material("person", rng), _u(rng, 1.35, 1.6)
    return Thing([cylinder("person", m, 0, 0, 0, h, 0.18), sphere("person", m, 0, h + 0.12, 0, 0.11)], 0.2, 0.2)


def _column(rng):
    r = _u(rng, 0.15, 0.3)
    return Thing([cylinder("column", random_material("column", rng), 0, 0, 0, 3.5, r)], r, r)


def _ball(rng, kind="ball", low=0.1, high=0.3):
    r = _u(rng, low, high)
    return Thing([sphere(kind, random_material(kind, rng), 0, r, 0, r)], r, r)


def _plant(rng, scale=1.0):
    pot, r = random_material("potted plant", rng), _u(rng, 0.12, 0.2) * scale
    leaves = random_material("potted plant", rng)
    return Thing([cylinder("potted plant", pot, 0, 0, 0, 2 * r, r),
                  sphere("potted plant", leaves, 0, 3.2 * r, 0, 1.6 * r)], 1.6 * r, 1.6 * r)


def _flat(kind, width, depth, height):
    def build(rng):
        w, d = _u(rng, *width), _u(rng, *depth)
        return Thing([box(kind, random_material(kind, rng), 0, 0, 0, w, height, d)], w / 2, d / 2)
    return build


# kind -> (builder, relative frequency, probability of standing against a wall)
FURNITURE = {
    "bed": (_bed, 1.0, 0.9), "table": (_table, 1.2, 0.2), "desk": (lambda rng: _table(rng, "desk"), 1.0, 0.8),
    "chair": (_chair, 1.5, 0.0), "sofa": (_sofa, 1.0, 0.7),
    "cabinet": (_block("cabinet", (0.5, 1.2), (0.7, 2.0), (0.4, 0.6)), 1.0, 0.9),
    "dresser": (_block("dresser", (0.8, 1.4), (0.7, 1.1), (0.4, 0.55)), 0.8, 0.9),
    "night stand": (_block("night stand", (0.4, 0.55), (0.45, 0.65), (0.35, 0.45)), 0.6, 0.9),
    "bookshelf": (_block("bookshelf", (0.7, 1.2), (1.4, 2.2), (0.28, 0.38), can_hold=False), 0.8, 1.0),
    "counter": (_block("counter", (1.2, 2.5), (0.85, 0.95), (0.55, 0.65)), 0.6, 1.0),
    "refrigerator": (_block("refrigerator", (0.6, 0.8), (1.6, 1.9), (0.6, 0.75), can_hold=False), 0.5, 1.0),
    "sink": (_block("sink", (0.45, 0.7), (0.8, 0.9), (0.4, 0.5)), 0.4, 1.0),
    "bathtub": (_block("bathtub", (1.4, 1.7), (0.5, 0.6), (0.7, 0.8), can_hold=False), 0.3, 1.0),
    "oven": (_block("oven", (0.55, 0.65), (0.85, 0.95), (0.55, 0.65)), 0.4, 1.0),
    "otherfurniture": (_block("otherfurniture", (0.4, 1.2), (0.4, 1.2), (0.3, 0.8)), 0.6, 0.5),
    "box": (_block("box", (0.2, 0.6), (0.15, 0.5), (0.2, 0.5)), 0.8, 0.3),
    "lamp": (_lamp, 0.6, 0.3), "toilet": (_toilet, 0.4, 1.0), "person": (_person, 0.4, 0.0),
    "column": (_column, 0.3, 0.0), "bag": (lambda rng: _ball(rng, "bag", 0.12, 0.22), 0.5, 0.0),
    "ball": (_ball, 0.4, 0.0), "potted plant": (_plant, 0.6, 0.3),
    "floor mat": (_flat("floor mat", (0.8, 2.0), (0.6, 1.4), 0.012), 0.5, 0.0),
    "clothes": (_flat("clothes", (0.3, 0.7), (0.3, 0.6), 0.08), 0.4, 0.0),
}

def _cylinder_thing(rng, kind, height, radius):
    material, tall, r = random_material(kind, rng), _u(rng, *height), _u(rng, *radius)
    return Thing([cylinder(kind, material, 0, 0, 0, tall, r)], r, r)


# Small objects that stand on tables, desks, counters, dressers...
SMALL = {
    "bottle": lambda rng: _cylinder_thing(rng, "bottle", (0.18, 0.3), (0.035, 0.035)),
    "vase": lambda rng: _cylinder_thing(rng, "vase", (0.15, 0.35), (0.05, 0.09)),
    "books": _block("books", (0.15, 0.3), (0.03, 0.15), (0.2, 0.28)),
    "television": _block("television", (0.5, 1.0), (0.35, 0.6), (0.05, 0.1)),
    "microwave": _block("microwave", (0.45, 0.55), (0.26, 0.32), (0.33, 0.4)),
    "toaster": _block("toaster", (0.22, 0.3), (0.17, 0.22), (0.13, 0.17)),
    "paper": _flat("paper", (0.2, 0.32), (0.2, 0.3), 0.004),
    "towel": _flat("towel", (0.2, 0.5), (0.15, 0.35), 0.04),
    "lamp": lambda rng: Thing([cylinder("lamp", random_material("lamp", rng), 0, 0, 0, 0.4, 0.1)], 0.1, 0.1),
    "box": _block("box", (0.1, 0.3), (0.08, 0.25), (0.1, 0.3)),
    "potted plant": lambda rng: _plant(rng, 0.5),
    "ball": lambda rng: _ball(rng, "ball", 0.05, 0.12),
}

# Wall items: kind -> ((width range), (height range), (bottom height range), see-through)
WALL_ITEMS = {
    "picture": ((0.3, 1.0), (0.3, 0.8), (1.1, 1.6), False), "window": ((0.8, 1.6), (0.8, 1.4), (0.8, 1.0), True),
    "door": ((0.8, 0.95), (2.0, 2.1), (0.0, 0.0), False), "whiteboard": ((1.2, 2.0), (0.9, 1.2), (0.8, 1.0), False),
    "mirror": ((0.4, 0.8), (0.6, 1.2), (0.9, 1.2), True), "shelves": ((0.6, 1.2), (0.03, 0.05), (1.2, 1.8), False),
    "clock": ((0.25, 0.35), (0.25, 0.35), (1.8, 2.1), False),
    "television": ((0.8, 1.3), (0.5, 0.75), (1.0, 1.4), False),
    "blinds": ((0.8, 1.6), (0.5, 1.2), (1.2, 1.4), False), "curtain": ((0.4, 0.8), (1.8, 2.3), (0.0, 0.2), False),
}
WALL_WEIGHTS = {"picture": 2.0, "window": 1.5, "door": 1.0, "whiteboard": 0.5, "mirror": 0.5, "shelves": 0.6,
                "clock": 0.5, "television": 0.5, "blinds": 0.5, "curtain": 0.6}


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    cdf = np.cumsum([weights[n] for n in names])
    return names[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(names) - 1)]


def indoor_scene(rng: np.random.Generator, height: int, width: int, focal: float) -> Scene:
    """A random furnished room seen from a camera standing near one wall."""
    room_w, room_d, room_h = _u(rng, 3.0, 7.0), _u(rng, 3.5, 8.0), _u(rng, 2.4, 3.2)
    x0, x1, z0, z1 = -room_w / 2, room_w / 2, -room_d / 2, room_d / 2
    wall_material = random_material("wall", rng, spread=0.1)
    prims: list[Primitive] = [
        Plane("floor", (0, 1, 0), 0.0, material=random_material("floor", rng)),
        Plane("ceiling", (0, 1, 0), room_h, material=random_material("ceiling", rng, spread=0.05)),
    ]
    for normal, offset in (((1, 0, 0), x0), ((1, 0, 0), x1), ((0, 0, 1), z0), ((0, 0, 1), z1)):
        prims.append(Plane("wall", normal, offset, material=wall_material))

    cam_pos = np.array([_u(rng, x0 + 0.8, x1 - 0.8), _u(rng, 1.0, 1.7), z1 - _u(rng, 0.4, 1.0)])
    # Look roughly towards a point on the far wall (yaw turns the view from -z towards -x), then jitter.
    target_x = _u(rng, x0 / 2, x1 / 2)
    yaw = np.arctan2(-(target_x - cam_pos[0]), -(z0 - cam_pos[2])) + _u(rng, -0.3, 0.3)
    rotation = rotation_yaw_pitch_roll(yaw, _u(rng, -0.45, -0.05), _u(rng, -0.05, 0.05))
    camera = Camera(height, width, focal, cam_pos, rotation)

    prims += _wall_items(rng, x0, x1, z0, room_h)
    prims += _furniture(rng, x0, x1, z0, z1, cam_pos)

    lights = [Light(intensity=_u(rng, 1.5, 3.0) * np.array([1.0, _u(rng, 0.85, 1.0), _u(rng, 0.7, 1.0)]),
                    position=np.array([_u(rng, x0, x1), room_h - 0.3, _u(rng, z0, z1)]))]
    if rng.random() < 0.7:
        direction = rng.normal(size=3)
        direction[1] = abs(direction[1]) + 0.5  # light comes from above
        lights.append(Light(intensity=_u(rng, 0.2, 0.6) * np.ones(3), direction=direction / np.linalg.norm(direction)))
    corners = np.array([[x, y, z] for x in (x0, x1) for y in (0.0, room_h) for z in (z0, z1)])
    return Scene(prims, camera, lights, ambient=_u(rng, 0.15, 0.35), extra_keypoints=corners)


def _wall_items(rng, x0, x1, z0, room_h) -> list[Primitive]:
    """Thin boxes on the three walls the camera faces, without overlaps along each wall."""
    walls = [(x0, np.pi / 2), (x1, -np.pi / 2), (z0, 0.0)]  # (wall position, yaw facing into the room)
    used: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
    prims: list[Primitive] = []
    for _ in range(int(rng.integers(1, 6))):
        kind = _choose(rng, WALL_WEIGHTS)
        width_range, height_range, bottom_range, see_through = WALL_ITEMS[kind]
        w, h, bottom = _u(rng, *width_range), _u(rng, *height_range), _u(rng, *bottom_range)
        h = min(h, room_h - bottom - 0.05)
        wall = int(rng.integers(0, 3))
        span = (z0, -z0) if wall < 2 else (x0, x1)  # extent along the wall
        if span[1] - span[0] < w + 0.4:
            continue
        centre = _u(rng, span[0] + w / 2 + 0.2, span[1] - w / 2 - 0.2)
        if any(abs(centre - c) < (w + other) / 2 + 0.05 for c, other in used[wall]):
            continue
        used[wall].append((centre, w))
        thickness = 0.03 if kind != "shelves" else 0.25
        material = random_material(kind, rng, emission=_u(rng, 0.5, 1.0) if kind == "window" else 0.0)
        panel = box(kind, material, 0, bottom, 0, w, h, thickness, see_through=see_through)
        thing = Thing([panel], w / 2, thickness / 2)
        position, yaw = walls[wall]
        unlabelled = rng.random() < UNLABELLED_PROB
        if wall < 2:  # side walls: the item runs along z
            x = position + (thickness / 2 if wall == 0 else -thickness / 2)
            prims += realise(thing, x, centre, yaw, unlabelled=unlabelled)
        else:
            prims += realise(thing, centre, position + thickness / 2, yaw, unlabelled=unlabelled)
    return prims


def _furniture(rng, x0, x1, z0, z1, cam_pos) -> list[Primitive]:
    """Furniture on the floor (some against walls) and small objects on furniture tops, without overlaps."""
    placed: list[tuple[float, float, float]] = [(cam_pos[0], cam_pos[2], 0.6)]  # (x, z, radius); camera keep-out
    prims: list[Primitive] = []
    tops: list[tuple[float, float, float, tuple]] = []
    weights = {kind: spec[1] for kind, spec in FURNITURE.items()}
    for _ in range(int(rng.integers(4, 12))):
        kind = _choose(rng, weights)
        builder, _, wall_prob = FURNITURE[kind]
        thing = builder(rng)
        for _attempt in range(6):
            pose = _floor_pose(rng, thing, x0, x1, z0, z1, against_wall=rng.random() < wall_prob)
            if pose is not None and all(np.hypot(pose[0] - px, pose[1] - pz) > thing.radius + pr
                                        for px, pz, pr in placed):
                break
        else:
            continue
        x, z, yaw = pose
        placed.append((x, z, thing.radius))
        prims += realise(thing, x, z, yaw, unlabelled=rng.random() < UNLABELLED_PROB)
        tops += [(x, z, yaw, top) for top in thing.tops]
    for x, z, yaw, (tx, tz, hx, hz, top_y) in tops:
        for _ in range(int(rng.integers(0, 3))):
            small = SMALL[list(SMALL)[int(rng.integers(len(SMALL)))]](rng)
            if small.half_x > hx or small.half_z > hz:
                continue
            lx = tx + _u(rng, -hx + small.half_x, hx - small.half_x)
            lz = tz + _u(rng, -hz + small.half_z, hz - small.half_z)
            wx, wz = local_to_world(x, z, yaw, lx, lz)
            turn = _u(rng, -0.3, 0.3)
            prims += realise(small, wx, wz, yaw + turn, y=top_y, unlabelled=rng.random() < UNLABELLED_PROB)
    return prims


def _floor_pose(rng, thing: Thing, x0, x1, z0, z1, against_wall: bool) -> tuple[float, float, float] | None:
    """Position and yaw of a thing on the floor (None if it does not fit); against a wall its back (local -z)
    touches the wall."""
    if against_wall:
        wall = int(rng.integers(0, 3))
        along = (z0, z1) if wall < 2 else (x0, x1)
        if along[1] - along[0] <= 2 * thing.half_x:
            return None
        centre = _u(rng, along[0] + thing.half_x, along[1] - thing.half_x)
        if wall == 0:
            return x0 + thing.half_z + 0.01, centre, np.pi / 2
        if wall == 1:
            return x1 - thing.half_z - 0.01, centre, -np.pi / 2
        return centre, z0 + thing.half_z + 0.01, 0.0
    margin = thing.radius
    if x1 - x0 <= 2 * margin or z1 - z0 <= 2 * margin:
        return None
    yaw = rng.integers(0, 4) * np.pi / 2 + rng.normal(0, 0.2)
    return _u(rng, x0 + margin, x1 - margin), _u(rng, z0 + margin, z1 - margin), float(yaw)
