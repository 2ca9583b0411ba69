"""Code shared by the three dataset loaders (docs/original.md §9).

* locating the data: dataroot / json index / split checks with helpful errors;
* reading files: PNG and .npy readers that name the file and what was expected;
* converting: BGR mean subtraction (no scaling) and HWC -> CHW tensors;
* the train-split augmentation of the original, in its order: random scale, random mirror,
  centred pad + random crop (labels padded with their ignore value).

The augmentation uses Python ``random`` for scale and mirror and ``np.random`` for the crop
offsets, exactly like the original, so seeding both reproduces it.
"""
from __future__ import annotations

import json
import os
import random
import sys
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch

# BGR order, subtracted from 0-255 pixel values (no /255, no std).
IMG_MEAN = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)
TRAIN_SPLITS = ('train', 'train1', 'train2')

Labels = dict[str, np.ndarray]


def is_train_split(split: str) -> bool:
    """Only these splits are augmented (and need a crop size)."""
    return split in TRAIN_SPLITS


# --------------------------------------------------------------------------- locating the data

def generate_command(layout: str, dataroot: str) -> str:
    return f'python tools/synthetic_data.py --layout {layout} --out {dataroot}'


def check_dataroot(dataroot: str, dataset: str, layout: str, tree: str) -> None:
    """Raise FileNotFoundError (with the expected tree and how to generate data) if dataroot is missing."""
    if not os.path.isdir(dataroot):
        raise FileNotFoundError(
            f"{dataset} dataroot '{dataroot}' does not exist (or is not a folder).\n"
            f"Expected layout:\n{tree}\n"
            f"To generate a small synthetic dataset there, run:\n  {generate_command(layout, dataroot)}")


def load_split_index(dataroot: str, json_name: str, split: str, entry_len: int, dataset: str,
                     layout: str, tree: str) -> list[list[str]]:
    """Read `<dataroot>/<json_name>` and return the entries of `split` (lists of relative paths)."""
    check_dataroot(dataroot, dataset, layout, tree)
    json_path = os.path.join(dataroot, json_name)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(
            f"{dataset} index file '{json_path}' not found.\nExpected layout:\n{tree}\n"
            f"To generate a small synthetic dataset, run:\n  {generate_command(layout, dataroot)}")
    try:
        with open(json_path, 'r') as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {dataset} index file '{json_path}' as JSON: {err}") from err
    if not isinstance(index, dict):
        raise ValueError(f"{dataset} index file '{json_path}' must hold a JSON object "
                         f"{{split: [entries]}}, got {type(index).__name__}")
    if split not in index:
        raise ValueError(f"split '{split}' is not in {dataset} index file '{json_path}'; "
                         f"available splits: {sorted(index)}")
    entries = index[split]
    if not isinstance(entries, list):
        raise ValueError(f"split '{split}' of '{json_path}' must be a list of entries, "
                         f"got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if (not isinstance(entry, (list, tuple)) or len(entry) != entry_len
                or not all(isinstance(p, str) for p in entry)):
            raise ValueError(f"entry {i} of split '{split}' in '{json_path}' must be a list of "
                             f"{entry_len} relative paths, got {entry!r}")
    return [list(entry) for entry in entries]


def resolve_output_size(dataset: str, split: str, crop_h: int | None, crop_w: int | None,
                        eval_h: int | None, eval_w: int | None,
                        default_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the returned samples: the crop for train splits, else the eval size."""
    if is_train_split(split):
        if crop_h is None or crop_w is None:
            raise ValueError(f"{dataset} split '{split}' is augmented and needs crop_h and crop_w "
                             f"(dataload.crop_h / dataload.crop_w), got {crop_h} x {crop_w}")
        return _positive_size(dataset, 'crop', crop_h, crop_w)
    if (eval_h is None) != (eval_w is None):
        raise ValueError(f"{dataset}: give both eval_h and eval_w or neither, got {eval_h} x {eval_w}")
    if eval_h is None:
        return default_hw
    return _positive_size(dataset, 'eval', eval_h, eval_w)


def _positive_size(dataset: str, what: str, h: int, w: int) -> tuple[int, int]:
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"{dataset}: {what} size must be positive integers, got {h} x {w}")
    return int(h), int(w)


# --------------------------------------------------------------------------- reading files

def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file '{path}' not found")


def read_png(path: str, what: str, channels: int, dtypes: Sequence[type]) -> np.ndarray:
    """Read an image file unchanged with cv2 (colour order BGR); [H,W] for 1 channel, else [H,W,C]."""
    _require_file(path, what)
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"cannot decode {what} file '{path}': not a readable image (corrupt PNG?)")
    got_channels = 1 if arr.ndim == 2 else arr.shape[2]
    if got_channels != channels or arr.dtype not in [np.dtype(d) for d in dtypes]:
        names = '/'.join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{what} file '{path}' must be a {channels}-channel {names} image, "
                         f"got {got_channels} channel(s) of {arr.dtype} (shape {arr.shape})")
    return arr


def read_npy(path: str, what: str) -> np.ndarray:
    """Load a plain (non-pickled) .npy array, naming the file on any failure."""
    _require_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError/EOFError/OSError/UnpicklingError for bad files
        raise ValueError(f"cannot load {what} file '{path}' as a .npy array (corrupt file?): {err}") from err
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{what} file '{path}' must hold a single .npy array, got {type(arr).__name__}")
    return arr


def require_numeric(arr: np.ndarray, path: str, what: str, kind: str) -> None:
    """kind 'float': floating dtype; 'integral': integer dtype or float holding whole numbers."""
    if kind == 'float' and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} file '{path}' must hold floating-point values, got dtype {arr.dtype}")
    if kind == 'integral':
        if np.issubdtype(arr.dtype, np.integer):
            return
        if not np.issubdtype(arr.dtype, np.floating) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{what} file '{path}' must hold integer class ids (integer dtype or whole "
                             f"floats), got dtype {arr.dtype}"
                             + ('' if not np.issubdtype(arr.dtype, np.floating) else ' with fractional values'))


_WARNED_NON_FINITE: set[str] = set()


def invalidate_non_finite(arr: np.ndarray, path: str, what: str, invalid: float = 0.0) -> np.ndarray:
    """Non-finite target values become invalid pixels (`invalid`, the original's 0), one warning per file.

    A NaN/inf target would otherwise make the loss or every validation metric NaN (docs/reliability.md).
    """
    finite = np.isfinite(arr)
    if finite.all():
        return arr
    bad = arr.size - int(np.count_nonzero(finite))
    if path not in _WARNED_NON_FINITE:
        _WARNED_NON_FINITE.add(path)
        note = ': the file has no valid pixel' if bad == arr.size else ''
        print(f"warning: {what} file '{path}': {bad} of {arr.size} values are NaN/inf, treated as invalid "
              f"pixels{note}", file=sys.stderr, flush=True)
    return np.where(finite, arr, arr.dtype.type(invalid))


def require_labels_below(seg: np.ndarray, path: str, what: str, num_classes: int | None, ignore: int) -> None:
    """Class ids must lie in 0..num_classes-1 or be the ignore value (else: a bare IndexError in the loss,
    a device-side assert on a GPU). Cheap: one max() per item in the common case."""
    if num_classes is None:
        return
    if seg.size == 0 or (seg.max() < num_classes and (seg.dtype.kind == 'u' or seg.min() >= 0)):
        return  # no ignore pixel and every id in range
    bad = seg[(seg != ignore) & ((seg >= num_classes) | (seg < 0))]
    if bad.size:
        raise ValueError(f"{what} file '{path}' has label {int(bad.flat[0])}: expected 0..{num_classes - 1} "
                         f"(tasks_num_class {num_classes}) or {ignore} (ignored)")


def require_shape(arr: np.ndarray, path: str, what: str, expected: tuple, note: str = '') -> None:
    """expected: tuple of ints or None (any size) per axis."""
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        shown = '[' + ','.join('*' if e is None else str(e) for e in expected) + ']'
        raise ValueError(f"{what} file '{path}' must have shape {shown}, got {list(arr.shape)}{note}")


def require_same_size(arrays: Mapping[str, np.ndarray], paths: Mapping[str, str]) -> None:
    """Image and labels of one sample must share H x W."""
    sizes = {name: arr.shape[:2] for name, arr in arrays.items()}
    if len(set(sizes.values())) > 1:
        listed = ', '.join(f"{name} '{paths[name]}' {h}x{w}" for name, (h, w) in sizes.items())
        raise ValueError(f"image and labels of one sample must have the same height x width: {listed}")


def require_eval_size(arrays: Mapping[str, np.ndarray], paths: Mapping[str, str], size: tuple[int, int],
                      dataset: str) -> None:
    """Un-augmented samples must be exactly the eval size (the original pre-tiles the mean to it)."""
    for name, arr in arrays.items():
        if tuple(arr.shape[:2]) != tuple(size):
            raise ValueError(
                f"{dataset} {name} file '{paths[name]}' is {arr.shape[0]}x{arr.shape[1]} but evaluation "
                f"splits are read unresized at exactly {size[0]}x{size[1]} (the original subtracts a mean "
                f"pre-tiled to that size). Set dataload.eval_h/eval_w to the data's size "
                f"(eval_h={arr.shape[0]}, eval_w={arr.shape[1]}) or resize the data.")


# --------------------------------------------------------------------------- conversions

def subtract_mean(img_bgr: np.ndarray) -> np.ndarray:
    """BGR 0-255 image [H,W,3] minus IMG_MEAN, as float32, rounded as the original's float64 path.

    For uint8/float32 pixels the float64 difference is exact, so one float32 subtraction rounds
    to the same value (and is 3x faster); wider inputs go through float64 as in the original.
    """
    if img_bgr.dtype in (np.uint8, np.float32):
        return img_bgr.astype(np.float32) - IMG_MEAN
    return (img_bgr.astype(np.float64) - IMG_MEAN).astype(np.float32)


def hwc_to_tensor(arr: np.ndarray, dtype: np.dtype | type | None = None) -> torch.Tensor:
    """[H,W,C] (or [H,W]) numpy array -> contiguous [C,H,W] tensor, optionally cast."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2 INTER_NEAREST resize keeping dtype and a trailing channel axis."""
    if arr.shape[:2] == (height, width):
        return arr
    out = cv2.resize(np.ascontiguousarray(arr), (width, height), interpolation=cv2.INTER_NEAREST)
    out = out.astype(arr.dtype, copy=False)  # OpenCV 5 maps int64 to int32
    return out.reshape((height, width) + arr.shape[2:])


# --------------------------------------------------------------------------- augmentation

def random_scale(img: np.ndarray, labels: Labels, scale: float | None = None) -> tuple[np.ndarray, Labels]:
    """Rescale by s = random.random() + 0.5: image bilinear (cv2 default), labels nearest."""
    if scale is None:
        scale = random.random() + 0.5
    h, w = img.shape[:2]
    h_new, w_new = int(h * scale), int(w * scale)
    img = cv2.resize(np.ascontiguousarray(img), (w_new, h_new)).reshape((h_new, w_new) + img.shape[2:])
    return img, {name: resize_nearest(lab, h_new, w_new) for name, lab in labels.items()}


def random_mirror(img: np.ndarray, labels: Labels, flip: bool | None = None,
                  negate_x: Iterable[str] = ()) -> tuple[np.ndarray, Labels]:
    """Flip horizontally if random.random() > 0.5; labels named in negate_x get channel 0 negated."""
    if flip is None:
        flip = random.random() > 0.5
    if not flip:
        return img, labels
    flipped = {name: lab[:, ::-1] for name, lab in labels.items()}
    for name in negate_x:
        lab = flipped[name].copy()
        lab[:, :, 0] *= -1
        flipped[name] = lab
    return img[:, ::-1], flipped


def pad_and_random_crop(img: np.ndarray, labels: Labels, pad_values: Mapping[str, float], crop_h: int,
                        crop_w: int, offsets: tuple[int, int] | None = None) -> tuple[np.ndarray, Labels]:
    """Centred pad to max(size, crop), then a random crop_h x crop_w window.

    Image pixels pad with 0, each label with its pad (ignore) value. This equals the original's
    "shift labels by -ignore, zero-pad, crop, shift back", including the float32 rounding that
    the shift applies to float labels (reproduced for faithfulness). `offsets` forces the crop
    start (row, col) inside the padded frame; otherwise np.random.randint draws it (rows first).
    """
    h, w = img.shape[:2]
    pad_h, pad_w = max(h, crop_h), max(w, crop_w)
    off_h, off_w = (pad_h - h) // 2, (pad_w - w) // 2
    if offsets is None:
        start_h = np.random.randint(0, pad_h - crop_h + 1)
        start_w = np.random.randint(0, pad_w - crop_w + 1)
    else:
        start_h, start_w = offsets
    window = (off_h, off_w, start_h, start_w, crop_h, crop_w)
    out_img = _pad_crop(img, 0, *window)
    out_labels = {}
    for name, lab in labels.items():
        pad = pad_values[name]
        cropped = _pad_crop(lab, pad, *window)
        if pad != 0 and np.issubdtype(cropped.dtype, np.floating):
            shift = np.float32(pad)
            cropped = ((cropped.astype(np.float32) - shift) + shift).astype(lab.dtype, copy=False)
        out_labels[name] = cropped
    return out_img, out_labels


def _pad_crop(arr: np.ndarray, pad_value: float, off_h: int, off_w: int, start_h: int, start_w: int,
              crop_h: int, crop_w: int) -> np.ndarray:
    """The crop window of `arr` placed at (off_h, off_w) in a frame filled with pad_value."""
    h, w = arr.shape[:2]
    out = np.full((crop_h, crop_w) + arr.shape[2:], pad_value, dtype=arr.dtype)
    top, bottom = max(off_h, start_h), min(off_h + h, start_h + crop_h)
    left, right = max(off_w, start_w), min(off_w + w, start_w + crop_w)
    if bottom > top and right > left:
        out[top - start_h:bottom - start_h, left - start_w:right - start_w] = \
            arr[top - off_h:bottom - off_h, left - off_w:right - off_w]
    return out


def augment_train_sample(img: np.ndarray, labels: Labels, pad_values: Mapping[str, float], crop_h: int,
                         crop_w: int, negate_x: Iterable[str] = ()) -> tuple[np.ndarray, Labels]:
    """The original's train-split augmentation: scale, mirror, pad + crop (labels are [H,W,C])."""
    img, labels = random_scale(img, labels)
    img, labels = random_mirror(img, labels, negate_x=negate_x)
    return pad_and_random_crop(img, labels, pad_values, crop_h, crop_w)
