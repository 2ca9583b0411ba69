"""KnownAnswer loader: the synthetic sharing benchmark with a known answer (docs/known_answer.md).

The NYU v2 layout (img, seg, normal_mask, depth, read by the NYU v2 loader with its rules) plus four targets
written by dataloaders/synthetic/known_answer.py: seg_perm (the segmentation under a fixed permutation of the
class ids), texture (the surface pattern class), blur (a blurred grey copy of the image) and noise (noise
independent of the image). They go through the same train-split augmentation as the NYU labels.
"""
from __future__ import annotations

import numpy as np

from dataloaders import transforms as T
from dataloaders.nyu_v2 import NYU_v2

JSON_NAME = 'known_answer.json'
IGNORE = 255  # seg_perm and texture ignore label; pads blur and noise in train crops (the L1 tasks skip it)
EXTRA = ('seg_perm', 'texture', 'blur', 'noise')
REGRESSION = ('blur', 'noise')  # stored 8-bit, returned as value / 127.5 - 1 in [-1, 1]
NUM_TEXTURE_CLASSES = 4
LAYOUT_TREE = """  <dataroot>/known_answer.json     {"train": [[img, seg, normal, depth, seg_perm, texture, blur, noise],
                                  ...], "train1", "train2", "val", "test", "test_small"}  (relative paths)
  <dataroot>/nyu_v2_3task.json     the same splits with the four NYU v2 files (the folder is an NYU v2 dataroot)
  <dataroot>/img, seg, normal_mask, depth/<id>   as the NYU v2 layout
  <dataroot>/seg_perm/<id>.png     8-bit gray, the seg classes 0-39 permuted, 255 = ignore
  <dataroot>/texture/<id>.png      8-bit gray, 0 plain, 1 noise, 2 stripes, 3 checker, 255 = ignore
  <dataroot>/blur/<id>.png         8-bit gray, the blurred grey level of the image
  <dataroot>/noise/<id>.png        8-bit gray, uniform noise independent of the image
  <dataroot>/known_answer_info.json  the permutation and how the targets were made"""


class KnownAnswer(NYU_v2):
    """Batch dicts img/seg/normal/depth (NYU v2) + seg_perm/texture (uint8 labels) + blur/noise (float [-1, 1])."""

    dataset_name = 'KnownAnswer'
    layout = 'known_answer'
    json_name = JSON_NAME
    entry_len = 4 + len(EXTRA)
    layout_tree = LAYOUT_TREE
    allows_samples_folder = False

    def _extra_paths(self, index: int) -> dict[str, str]:
        return dict(zip(EXTRA, self.entries[index][4:]))

    def _extra_labels(self, paths: dict[str, str]) -> dict[str, np.ndarray]:
        labels = {}
        for name in EXTRA:
            label = T.read_png(paths[name], f'KnownAnswer {name}', 1, (np.uint8,))[:, :, None]
            if name == 'seg_perm':
                T.require_labels_below(label, paths[name], 'KnownAnswer seg_perm', self.num_seg_classes, IGNORE)
            elif name == 'texture':
                T.require_labels_below(label, paths[name], 'KnownAnswer texture', NUM_TEXTURE_CLASSES, IGNORE)
            else:  # float before the augmentation, so that the 255 crop padding cannot be a target value
                label = label.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
            labels[name] = label
        return labels

    def _extra_pad_values(self) -> dict[str, float]:
        return {name: IGNORE for name in EXTRA}

    def _extra_tensors(self, labels: dict[str, np.ndarray]) -> dict:
        return {name: T.hwc_to_tensor(labels[name], np.float32 if name in REGRESSION else np.uint8)
                for name in EXTRA}

    def __repr__(self) -> str:
        return (f"KnownAnswer(dataroot='{self.dataroot}' [{JSON_NAME}], split='{self.split}', n={len(self)}, "
                f"size={self.out_hw}, augment={self.augment}, decode_normals={self.decode_normals})")
