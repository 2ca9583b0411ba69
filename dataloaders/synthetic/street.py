"""Random street scenes (CityScapes): road plane, sidewalks, buildings, poles, signs, trees, vehicles, people.

The camera sits at driver height on the road looking down the street (-z); rays that hit nothing see the sky.
"""
from __future__ import annotations

import numpy as np

from .parts import Thing, box, cylinder, realise, sphere
from .render import random_material
from .scene import Box, Camera, Light, Plane, Primitive, Scene, rotation_yaw_pitch_roll

STREET_START, STREET_END = 10.0, -150.0  # z extent of the modelled street (camera at z = 0)
OBJECTS_END = -70.0  # no poles, trees, people or vehicles beyond (they would be a few pixels at most)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def street_scene(rng: np.random.Generator, height: int, width: int, focal: float) -> Scene:
    road_half, walk = _u(rng, 3.5, 7.5), _u(rng, 2.0, 4.0)
    road = random_material("road", rng, spread=0.05, patterned=False)
    prims: list[Primitive] = [Plane("road", (0, 1, 0), 0.0, material=road)]
    length, mid = STREET_START - STREET_END, (STREET_START + STREET_END) / 2
    for side in (-1, 1):
        material = random_material("sidewalk", rng, spread=0.08)
        prims.append(Box("sidewalk", (side * (road_half + walk / 2), 0.075, mid), (walk / 2, 0.075, length / 2),
                         material=material))
        outer = road_half + walk
        if rng.random() < 0.5:  # a grass strip between sidewalk and buildings
            grass = _u(rng, 1.0, 3.0)
            prims.append(Box("terrain", (side * (outer + grass / 2), 0.05, mid), (grass / 2, 0.05, length / 2),
                             material=random_material("terrain", rng, spread=0.08)))
            outer += grass
        prims += _frontage(rng, side, outer)
        prims += _sidewalk_things(rng, side, road_half, walk)
    prims += _traffic(rng, road_half)

    camera_pos = np.array([_u(rng, -road_half + 1.5, road_half - 1.5), _u(rng, 1.2, 1.6), 0.0])
    rotation = rotation_yaw_pitch_roll(_u(rng, -0.1, 0.1), _u(rng, -0.12, 0.0), _u(rng, -0.02, 0.02))
    sun = np.array([_u(rng, -1, 1), _u(rng, 0.4, 1.5), _u(rng, -1, 1)])
    lights = [Light(intensity=_u(rng, 0.8, 1.3) * np.array([1.0, 0.97, 0.9]), direction=sun / np.linalg.norm(sun))]
    return Scene(prims, Camera(height, width, focal, camera_pos, rotation), lights, ambient=_u(rng, 0.3, 0.5),
                 has_sky=True)


def _frontage(rng, side: int, outer: float) -> list[Primitive]:
    """Buildings (or a low wall, a fence, a hedge) along one side of the street, with occasional gaps."""
    prims: list[Primitive] = []
    z = STREET_START
    while z > STREET_END:
        extent = _u(rng, 8.0, 25.0)
        setback = _u(rng, 0.0, 3.0)
        roll = rng.random()
        centre_z = z - extent / 2
        if roll < 0.7:
            depth, tall = 15.0, _u(rng, 5.0, 30.0)
            prims.append(Box("building", (side * (outer + setback + depth / 2), tall / 2, centre_z),
                             (depth / 2, tall / 2, extent / 2), material=random_material("building", rng, 0.2)))
        elif roll < 0.8:
            prims.append(Box("wall", (side * (outer + 0.15), 0.6, centre_z), (0.15, 0.6, extent / 2),
                             material=random_material("wall", rng)))
        elif roll < 0.9:
            prims.append(Box("fence", (side * (outer + 0.03), 0.7, centre_z), (0.03, 0.7, extent / 2),
                             material=random_material("fence", rng)))
        else:
            prims.append(Box("vegetation", (side * (outer + 1.0), 1.0, centre_z), (1.0, 1.0, extent / 2),
                             material=random_material("vegetation", rng, 0.08)))
        z -= extent + (_u(rng, 2.0, 8.0) if rng.random() < 0.3 else 0.0)
    return prims


def _sidewalk_things(rng, side: int, road_half: float, walk: float) -> list[Primitive]:
    """Poles with signs or lights, trees, pedestrians and static clutter on one sidewalk."""
    prims: list[Primitive] = []
    curb_x = side * (road_half + 0.4)
    z = -_u(rng, 3.0, 12.0)
    while z > OBJECTS_END:
        roll = rng.random()
        if roll < 0.45:
            top = _u(rng, 3.0, 7.0)
            parts = [cylinder("pole", random_material("pole", rng), 0, 0, 0.15, top, _u(rng, 0.06, 0.12))]
            if rng.random() < 0.4:
                sign = random_material("traffic sign", rng)
                parts.append(box("traffic sign", sign, 0, top - 0.8, 0.1, 0.6, 0.6, 0.04))
            elif rng.random() < 0.4:
                light = random_material("traffic light", rng)
                parts.append(box("traffic light", light, 0, top - 1.0, 0.2, 0.3, 0.9, 0.3))
            prims += realise(Thing(parts, 0.3, 0.3), curb_x, z, 0.0)
        elif roll < 0.7:
            tree_x = side * (road_half + walk - 0.8)
            crown = _u(rng, 1.2, 2.5)
            material = random_material("vegetation", rng, 0.08)
            trunk = _u(rng, 2.0, 3.5)
            prims += realise(Thing([cylinder("vegetation", material, 0, 0, 0.15, trunk, 0.15),
                                    sphere("vegetation", material, 0, trunk + crown * 0.8, 0, crown)], crown, crown),
                             tree_x, z, 0.0)
        elif roll < 0.9:
            walker_x = side * (road_half + _u(rng, 0.8, walk - 0.4))
            prims += realise(_person(rng, "person"), walker_x, z, 0.0, y=0.15)
        else:
            bin_size = _u(rng, 0.4, 0.8)
            prims += realise(Thing([box("void", random_material("void", rng), 0, 0, 0, bin_size, 1.0, bin_size)],
                                   bin_size / 2, bin_size / 2), side * (road_half + walk - 0.5), z, 0.0, y=0.15)
        z -= _u(rng, 4.0, 15.0)
    return prims


def _person(rng, kind: str) -> Thing:
    material = random_material(kind, rng)
    tall = _u(rng, 1.4, 1.65)
    body = cylinder(kind, material, 0, 0, 0, tall, 0.2)
    return Thing([body, sphere(kind, material, 0, tall + 0.12, 0, 0.12)], 0.2, 0.2)


def _vehicle(rng) -> Thing:
    roll = rng.random()
    if roll < 0.6:
        material = random_material("car", rng, 0.25)
        w, l = _u(rng, 1.7, 1.9), _u(rng, 3.8, 4.8)
        parts = [box("car", material, 0, 0.2, 0, w, 0.85, l),  # body
                 box("car", material, 0, 1.05, 0.2, w - 0.15, 0.6, l * 0.5)]  # cabin
        return Thing(parts, w / 2, l / 2)
    if roll < 0.75:
        material = random_material("truck", rng, 0.2)
        parts = [box("truck", material, 0, 0.4, -1.0, 2.3, 2.8, 5.0),  # cargo box
                 box("truck", material, 0, 0.4, 2.2, 2.2, 2.0, 1.6)]  # cab
        return Thing(parts, 1.2, 3.5)
    if roll < 0.85:
        return Thing([box("bus", random_material("bus", rng, 0.2), 0, 0.3, 0, 2.5, 2.9, 11.0)], 1.25, 5.5)
    if roll < 0.92:
        return Thing([box("motorcycle", random_material("motorcycle", rng), 0, 0.1, 0, 0.6, 0.9, 2.0)], 0.3, 1.0)
    rider = _person(rng, "rider")
    bike = box("bicycle", random_material("bicycle", rng), 0, 0.05, 0, 0.15, 0.9, 1.7)
    body = [part for part in rider.parts]
    for part in body:  # the rider sits on the bicycle
        if part.shape == "cylinder":
            y0, y1, r = part.size
            part.size = (0.95, 0.95 + (y1 - y0) * 0.6, r)
        else:
            part.center = (part.center[0], 0.95 + (part.center[1] - 0.12) * 0.6 + 0.12, part.center[2])
    return Thing([bike] + body, 0.3, 0.85)


def _traffic(rng, road_half: float) -> list[Primitive]:
    """Parked vehicles along both curbs and moving ones in the lanes, all ahead of the camera."""
    prims: list[Primitive] = []
    parked = [side * (road_half - 1.1) for side in (-1, 1)]  # vehicles there span |x| in [road_half - 2, road_half]
    moving = [0.0] if road_half < 5.0 else [-road_half / 2 + 0.8, road_half / 2 - 0.8]
    for lane_x in parked + moving:
        z = -_u(rng, 6.0, 20.0)
        while z > OBJECTS_END:
            vehicle = _vehicle(rng)
            z -= vehicle.half_z
            prims += realise(vehicle, lane_x + _u(rng, -0.1, 0.1), z, float(rng.choice([0.0, np.pi])))
            z -= vehicle.half_z + _u(rng, 1.0, 25.0)
    return prims
