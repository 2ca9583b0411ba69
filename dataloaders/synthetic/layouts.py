"""File writers: one per on-disk layout (docs/original.md §9), each returning the relative paths of an item's files."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np


# Fast settings for generated datasets (zlib level 1, run-length strategy, SUB filter: ~2x faster than the default
# at a similar size); the committed samples folder uses the smallest files instead.
FAST_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
SMALL_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 9]


def _write_png(path: str, array: np.ndarray, params: list[int]) -> None:
    """Write a PNG; 3-channel arrays are given as RGB (stored as true RGB in the file)."""
    if array.ndim == 3:
        array = array[..., ::-1]  # OpenCV encodes BGR-ordered arrays
    # imencode + a plain write: cv2.imwrite is several times slower here for small images.
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array), params)
    if not ok:
        raise OSError(f"could not encode PNG {path!r} from an array of shape {array.shape} and dtype {array.dtype}")
    with open(path, "wb") as handle:
        handle.write(encoded.tobytes())


class LayoutWriter:
    """Writes items under `root`; subclasses define the paths and formats of one dataset layout."""

    index_file: str | None = None

    def __init__(self, root: str, small_files: bool = False) -> None:
        self.root = root
        self.png_params = SMALL_PNG if small_files else FAST_PNG
        self._made_dirs: set[str] = set()

    def _path(self, relative: str) -> str:
        folder = os.path.dirname(relative)
        if folder not in self._made_dirs:
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
            self._made_dirs.add(folder)
        return os.path.join(self.root, relative)

    def png(self, relative: str, array: np.ndarray) -> str:
        _write_png(self._path(relative), array, self.png_params)
        return relative

    def npy(self, relative: str, array: np.ndarray) -> str:
        np.save(self._path(relative), array)
        return relative

    def write(self, split: str, index: int, arrays: dict[str, np.ndarray]) -> list[str]:
        raise NotImplementedError

    def write_index(self, splits: dict[str, list[list[str]]]) -> None:
        if self.index_file is not None:
            with open(os.path.join(self.root, self.index_file), "w") as handle:
                json.dump(splits, handle)


class NyuWriter(LayoutWriter):
    """`[img, seg, normal, depth]` = img/<id>.png (RGB), seg/<id>.png (gray), normal_mask/<id>.png (RGB),
    depth/<id>.npy (float32 metres)."""

    index_file = "nyu_v2_3task.json"

    def item_id(self, split: str, index: int) -> str:
        return f"{split}_{index:05d}"

    def write(self, split, index, arrays):
        name = self.item_id(split, index)
        return [self.png(f"img/{name}.png", arrays["img"]), self.png(f"seg/{name}.png", arrays["seg"]),
                self.png(f"normal_mask/{name}.png", arrays["normal"]), self.npy(f"depth/{name}.npy", arrays["depth"])]


class NyuSamplesWriter(NyuWriter):
    """The NYU v2 samples-folder layout: the same four folders, no json index."""

    index_file = None

    def item_id(self, split, index):
        return f"{index:04d}"


class KnownAnswerWriter(NyuWriter):
    """The NYU v2 files plus seg_perm/<id>.png, texture/<id>.png, blur/<id>.png, noise/<id>.png (8-bit gray);
    known_answer.json lists all eight, nyu_v2_3task.json the NYU four (the folder is also an NYU v2 dataroot)."""

    index_file = "known_answer.json"
    EXTRA = ("seg_perm", "texture", "blur", "noise")

    def write(self, split, index, arrays):
        name = self.item_id(split, index)
        return super().write(split, index, arrays) + [self.png(f"{key}/{name}.png", arrays[key]) for key in self.EXTRA]

    def write_index(self, splits):
        super().write_index(splits)
        nyu = {split: [entry[:4] for entry in entries] for split, entries in splits.items()}
        with open(os.path.join(self.root, NyuWriter.index_file), "w") as handle:
            json.dump(nyu, handle)

    def write_info(self, info: dict) -> None:
        with open(os.path.join(self.root, "known_answer_info.json"), "w") as handle:
            json.dump(info, handle, indent=1)


class CityscapesWriter(LayoutWriter):
    """`[img, depth, label2, label7, label19]` = <split>/{image,depth,label_2,label_7,label_19}/<index>.npy."""

    index_file = "cityscape.json"

    def write(self, split, index, arrays):
        return [self.npy(f"{split}/{folder}/{index}.npy", arrays[key]) for key, folder in
                (("img", "image"), ("depth", "depth"), ("label2", "label_2"), ("label7", "label_7"),
                 ("label19", "label_19"))]


class TaskonomyWriter(LayoutWriter):
    """`[img, seg, sn, depth, keypoint, edge]` PNGs under <building>/<domain>/, Taskonomy-style file names."""

    index_file = "taskonomy.json"
    DOMAINS = (("img", "rgb"), ("seg", "segment_semantic"), ("sn", "normal"), ("depth", "depth_zbuffer"),
               ("keypoint", "keypoints2d"), ("edge", "edge_occlusion"))

    def write(self, split, index, arrays):
        building = f"synthetic_{split}"
        return [self.png(f"{building}/{domain}/point_{index}_view_0_domain_{domain}.png", arrays[key])
                for key, domain in self.DOMAINS]

    def write_prior(self, weights: np.ndarray) -> None:
        np.save(os.path.join(self.root, "semseg_prior_factor.npy"), weights.astype(np.float32))


WRITERS = {"nyu_v2": NyuWriter, "nyu_v2_samples": NyuSamplesWriter, "cityscapes": CityscapesWriter,
           "taskonomy": TaskonomyWriter, "known_answer": KnownAnswerWriter}


def semseg_prior_factor(counts: np.ndarray) -> np.ndarray:
    """Median-frequency class weights with add-one smoothing: positive, 1 for a class of median frequency."""
    freq = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    return (np.median(freq) / freq).astype(np.float32)
