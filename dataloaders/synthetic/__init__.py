"""Synthetic multi-task datasets for AdaShare: ray-cast analytic scenes written in the NYU v2, CityScapes and
Taskonomy on-disk layouts (docs/original.md §9), so the whole pipeline runs without the real data.

Usage: ``python tools/synthetic_data.py --layout {nyu_v2,cityscapes,taskonomy,nyu_v2_samples} --out DIR`` or
``generate_dataset(layout, out_dir, ...)``.

Scenes: random furnished rooms (NYU v2, Taskonomy) and streets (CityScapes) made of planes, yawed boxes, spheres and
vertical cylinders, ray cast from a randomised pinhole camera (numpy, vectorised). All labels come from the same
geometry: the class of the primitive hit, its z-depth and normal, occlusion edges and visible corners.

Conventions (see samples.py for the exact encodings):
* camera frame: x right, y up, z towards the camera (normals facing the camera have positive z), the colour
  convention of the usual NYU v2 normal maps; normals stored as RGB (n + 1) * 127.5 with R=x, G=y, B=z;
* depth is z-depth (along the optical axis), as NYU v2 stores it: NYU in metres (float32 npy), Taskonomy in 1/512 m
  (16-bit PNG, 65535 invalid), CityScapes as normalised disparity 1/z in 1/m (0 = sky / ego vehicle = invalid);
* CityScapes label2: 0 = static background (flat, construction, nature, sky), 1 = objects (object, human, vehicle
  categories); label7 = the 7 standard categories; label19 the 19 train classes; -1 = ignore;
* intrinsics: principal point at the image centre, focal length from samples.focal_length (NYU's 518.86 px at
  640 wide, CityScapes' 2262.52 px at 2048 wide, Taskonomy 60 degrees horizontal field of view);
* reproducibility: item i of split s uses numpy Generator seeded with (seed, split code, i); same seed, same bytes.
"""
from .generate import DEFAULT_SIZES, LAYOUTS, generate_dataset, item_rng
from .render import Rendering, render_scene
from .samples import Sample, focal_length, make_sample
from .scene import Camera, Hits, Scene, cast

__all__ = ["DEFAULT_SIZES", "LAYOUTS", "generate_dataset", "item_rng", "Rendering", "render_scene", "Sample",
           "focal_length", "make_sample", "Camera", "Hits", "Scene", "cast"]
