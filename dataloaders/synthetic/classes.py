"""Label tables: object kinds of the synthetic scenes and their class ids in NYU v2, CityScapes and Taskonomy."""
from __future__ import annotations

import numpy as np

# NYU v2 40-class labels as AdaShare stores them (NYU40 id - 1; 255 = ignore).
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
NYU_IGNORE = 255

# Tiny-Taskonomy's 17 segmentation classes (COCO indoor objects + background; names are for readability).
# On disk a class c is stored as raw c + 1; raw 0 = unlabelled.
TASKONOMY_CLASSES = (
    "background", "bottle", "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
)

# CityScapes 19 train classes, the standard 7 categories, and this project's 2-class split.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CITYSCAPES_19_TO_7 = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6], dtype=np.int64)
# label2: 0 = static background (flat, construction, nature, sky), 1 = objects (object, human, vehicle).
CITYSCAPES_7_TO_2 = np.array([0, 0, 1, 0, 0, 1, 1], dtype=np.int64)
CITYSCAPES_IGNORE = -1

_NYU = {name: i for i, name in enumerate(NYU40_CLASSES)}
_TASKONOMY = {name: i for i, name in enumerate(TASKONOMY_CLASSES)}

# Indoor object kind -> (NYU40 class, Taskonomy class).
INDOOR_KINDS: dict[str, tuple[int, int]] = {
    "wall": (_NYU["wall"], 0), "floor": (_NYU["floor"], 0), "ceiling": (_NYU["ceiling"], 0),
    "door": (_NYU["door"], 0), "window": (_NYU["window"], 0), "picture": (_NYU["picture"], 0),
    "whiteboard": (_NYU["whiteboard"], 0), "mirror": (_NYU["mirror"], 0), "blinds": (_NYU["blinds"], 0),
    "curtain": (_NYU["curtain"], 0), "shelves": (_NYU["shelves"], 0), "cabinet": (_NYU["cabinet"], 0),
    "bed": (_NYU["bed"], _TASKONOMY["bed"]), "pillow": (_NYU["pillow"], 0),
    "chair": (_NYU["chair"], _TASKONOMY["chair"]), "sofa": (_NYU["sofa"], _TASKONOMY["couch"]),
    "table": (_NYU["table"], _TASKONOMY["dining table"]), "desk": (_NYU["desk"], _TASKONOMY["dining table"]),
    "bookshelf": (_NYU["bookshelf"], 0), "books": (_NYU["books"], _TASKONOMY["book"]),
    "counter": (_NYU["counter"], 0), "dresser": (_NYU["dresser"], 0), "night stand": (_NYU["night stand"], 0),
    "floor mat": (_NYU["floor mat"], 0), "clothes": (_NYU["clothes"], 0),
    "refrigerator": (_NYU["refridgerator"], _TASKONOMY["refrigerator"]),
    "television": (_NYU["television"], _TASKONOMY["tv"]), "paper": (_NYU["paper"], 0),
    "towel": (_NYU["towel"], 0), "box": (_NYU["box"], 0), "person": (_NYU["person"], 0),
    "toilet": (_NYU["toilet"], _TASKONOMY["toilet"]), "sink": (_NYU["sink"], _TASKONOMY["sink"]),
    "lamp": (_NYU["lamp"], 0), "bathtub": (_NYU["bathtub"], 0), "bag": (_NYU["bag"], 0),
    "column": (_NYU["otherstructure"], 0), "otherfurniture": (_NYU["otherfurniture"], 0),
    "ball": (_NYU["otherprop"], 0), "bottle": (_NYU["otherprop"], _TASKONOMY["bottle"]),
    "vase": (_NYU["otherprop"], _TASKONOMY["vase"]),
    "potted plant": (_NYU["otherprop"], _TASKONOMY["potted plant"]),
    "microwave": (_NYU["otherprop"], _TASKONOMY["microwave"]), "toaster": (_NYU["otherprop"], _TASKONOMY["toaster"]),
    "clock": (_NYU["otherprop"], _TASKONOMY["clock"]), "oven": (_NYU["otherfurniture"], _TASKONOMY["oven"]),
}

# Street object kinds are the CityScapes class names plus "void" (static clutter, labelled ignore).
STREET_KINDS: dict[str, int] = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
STREET_KINDS["void"] = CITYSCAPES_IGNORE


def class_lookup(kinds: list[str], table: dict[str, int], fallback: int) -> np.ndarray:
    """Per-primitive class ids, plus `fallback` appended so that index -1 (no hit) maps to it."""
    return np.array([table[kind] for kind in kinds] + [fallback], dtype=np.int64)
