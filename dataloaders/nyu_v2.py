"""NYU v2 loader (docs/original.md §9.1): json-indexed dataroot, or a plain samples folder
(docs/original.md §8, the original's test_sample.py)."""
from __future__ import annotations

import os

import numpy as np
from torch.utils.data import Dataset

from dataloaders import transforms as T

JSON_NAME = 'nyu_v2_3task.json'
DEFAULT_EVAL_HW = (480, 640)
SEG_IGNORE = 255
NORMAL_INVALID = 255
SAMPLE_DIRS = ('img', 'seg', 'normal_mask', 'depth')
LAYOUT_TREE = """  <dataroot>/nyu_v2_3task.json   {"train": [[img, seg, normal, depth], ...], "train1": [...],
                                  "train2": [...], "test": [...]}  (paths relative to dataroot)
  <dataroot>/img/<id>.png          8-bit 3-channel image (BGR as read by cv2), 480x640
  <dataroot>/seg/<id>.png          8-bit grayscale, classes 0-39, 255 = ignore
  <dataroot>/normal_mask/<id>.png  8-bit 3-channel, (n+1)*127.5, invalid = (255,255,255)
  <dataroot>/depth/<id>.npy        float [480,640] metres, 0 = invalid
or a samples folder: the four sub-folders above and no json (split 'test')."""


def is_samples_folder(path: str) -> bool:
    """True for a folder with img/, seg/, normal_mask/, depth/ and no nyu_v2_3task.json."""
    return (os.path.isdir(path) and not os.path.exists(os.path.join(path, JSON_NAME))
            and all(os.path.isdir(os.path.join(path, d)) for d in SAMPLE_DIRS))


def index_samples_folder(path: str) -> list[list[str]]:
    """Entries [img, seg, normal, depth] for every img/<id>.png whose 3 partner files exist, by id."""
    entries = []
    for file_name in sorted(os.listdir(os.path.join(path, 'img'))):
        sample_id, ext = os.path.splitext(file_name)
        if ext != '.png':
            continue
        entry = [f'img/{file_name}', f'seg/{file_name}', f'normal_mask/{file_name}', f'depth/{sample_id}.npy']
        if all(os.path.isfile(os.path.join(path, rel)) for rel in entry[1:]):
            entries.append(entry)
    if not entries:
        raise FileNotFoundError(
            f"samples folder '{path}' has no complete sample: each img/<id>.png needs seg/<id>.png, "
            f"normal_mask/<id>.png and depth/<id>.npy")
    return entries


def decode_normals(normal_bgr: np.ndarray) -> np.ndarray:
    """Raw NYU normal PNG (cv2 B,G,R = z,y,x as (n+1)*127.5) -> float32 unit (x,y,z); invalid -> 0.

    Invalid are the (255,255,255) pixels and vectors too short to be a direction (norm <= 0.5,
    e.g. the (127,127,127) "zero normal" frame).
    """
    xyz = normal_bgr[:, :, ::-1].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    norm = np.linalg.norm(xyz, axis=2, keepdims=True)
    invalid = np.all(normal_bgr == NORMAL_INVALID, axis=2, keepdims=True) | (norm <= 0.5)
    return np.where(invalid, np.float32(0.0), xyz / np.maximum(norm, 1e-12)).astype(np.float32)


class NYU_v2(Dataset):
    """NYU v2 (seg 40 classes, surface normals, depth) as batch dicts img/seg/normal/depth/name.

    A subclass may read more label files per entry (dataloaders/known_answer.py): the class attributes below
    name its index, and the three `_extra_*` hooks read them, give their pad values and make their tensors;
    they go through the same augmentation as the NYU labels. Here they add nothing.
    """

    dataset_name = 'NYU_v2'
    layout = 'nyu_v2'
    json_name = JSON_NAME
    entry_len = 4
    layout_tree = LAYOUT_TREE
    allows_samples_folder = True

    def __init__(self, dataroot: str, split: str, crop_h: int | None = None, crop_w: int | None = None,
                 eval_h: int | None = None, eval_w: int | None = None, decode_normals: bool = False,
                 num_seg_classes: int | None = None):
        self.dataroot = dataroot
        self.num_seg_classes = num_seg_classes  # labels are checked against it when given
        self.split = split
        self.decode_normals = decode_normals
        self.samples_folder = self.allows_samples_folder and is_samples_folder(dataroot)
        if self.samples_folder:
            if split != 'test':
                raise ValueError(f"'{dataroot}' is a samples folder (no {JSON_NAME}); its only split is "
                                 f"'test', got '{split}'")
            self.entries = index_samples_folder(dataroot)
        else:
            self.entries = T.load_split_index(dataroot, self.json_name, split, self.entry_len, self.dataset_name,
                                              self.layout, self.layout_tree)
        self.augment = T.is_train_split(split)
        self.out_hw = T.resolve_output_size(self.dataset_name, split, crop_h, crop_w, eval_h, eval_w, DEFAULT_EVAL_HW)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        paths = dict(zip(('img', 'seg', 'normal', 'depth'),
                         (os.path.join(self.dataroot, rel) for rel in self.entries[index][:4])))
        img = T.read_png(paths['img'], 'NYU v2 image', 3, (np.uint8,))
        seg = T.read_png(paths['seg'], 'NYU v2 segmentation', 1, (np.uint8,))[:, :, None]
        normal = T.read_png(paths['normal'], 'NYU v2 normal', 3, (np.uint8,))
        depth = T.read_npy(paths['depth'], 'NYU v2 depth')
        T.require_numeric(depth, paths['depth'], 'NYU v2 depth', 'float')
        depth = T.invalidate_non_finite(depth, paths['depth'], 'NYU v2 depth')
        T.require_labels_below(seg, paths['seg'], 'NYU v2 segmentation', self.num_seg_classes, SEG_IGNORE)
        if depth.ndim == 2:
            depth = depth[:, :, None]
        T.require_shape(depth, paths['depth'], 'NYU v2 depth', (None, None, 1))
        depth = depth.astype(np.float32, copy=False)
        labels = {'seg': seg, 'normal': normal, 'depth': depth}
        extra_paths = {name: os.path.join(self.dataroot, rel) for name, rel in self._extra_paths(index).items()}
        labels.update(self._extra_labels(extra_paths))
        paths = {**paths, **extra_paths}
        T.require_same_size({'img': img, **labels}, paths)
        if self.decode_normals:
            labels['normal'] = decode_normals(normal)

        if self.augment:
            pad_values = {'seg': SEG_IGNORE, 'normal': 0 if self.decode_normals else NORMAL_INVALID, 'depth': 0,
                          **self._extra_pad_values()}
            # Faithful: raw normals are mirrored without negating x; decoded ones negate x.
            negate_x = ('normal',) if self.decode_normals else ()
            img, labels = T.augment_train_sample(img, labels, pad_values, *self.out_hw, negate_x=negate_x)
        else:
            T.require_eval_size({'img': img, **labels}, paths, self.out_hw, self.dataset_name)

        return {
            'img': T.hwc_to_tensor(T.subtract_mean(img)),
            'seg': T.hwc_to_tensor(labels['seg'], np.uint8),
            'normal': T.hwc_to_tensor(labels['normal'], np.float32 if self.decode_normals else np.uint8),
            'depth': T.hwc_to_tensor(labels['depth'], np.float32),
            **self._extra_tensors(labels),
            'name': os.path.basename(self.entries[index][0]),
        }

    # Hooks of a subclass with more label files (none here).
    def _extra_paths(self, index: int) -> dict[str, str]:
        """Label name -> path relative to dataroot of the extra files of entry `index`."""
        return {}

    def _extra_labels(self, paths: dict[str, str]) -> dict[str, np.ndarray]:
        """The extra labels read from `paths`, each [H, W, C] at the image size."""
        return {}

    def _extra_pad_values(self) -> dict[str, float]:
        """Pad (ignore) value of each extra label in the train-split crop."""
        return {}

    def _extra_tensors(self, labels: dict[str, np.ndarray]) -> dict:
        """Batch entries of the extra labels (after augmentation)."""
        return {}

    def name(self) -> str:
        return self.dataset_name

    def __repr__(self) -> str:
        mode = 'samples folder' if self.samples_folder else JSON_NAME
        return (f"NYU_v2(dataroot='{self.dataroot}' [{mode}], split='{self.split}', n={len(self)}, "
                f"size={self.out_hw}, augment={self.augment}, decode_normals={self.decode_normals})")

