"""CityScapes loader (docs/original.md §9.2): json-indexed .npy files, 2/7/19-class segmentation + depth."""
from __future__ import annotations

import os

import numpy as np
from torch.utils.data import Dataset

from dataloaders import transforms as T

JSON_NAME = 'cityscape.json'
SEG_IGNORE = -1
LABEL_KEYS = ('label2', 'label7', 'label19')
SEG_CLASS_CHOICES = {2: 'label2', 7: 'label7', 19: 'label19', -1: 'label19'}
LAYOUT_TREE = """  <dataroot>/cityscape.json   {"train": [[img, depth, label2, label7, label19], ...], "train1": [...],
                               "train2": [...], "test": [...]}  (paths relative to dataroot, all .npy)
  img npy     float [H,W,3] RGB in [0,1]
  depth npy   float [H,W,1]
  label npys  integer class ids [H,W], -1 = ignore
  H x W = 256x512 (128x256 with small_res) for the evaluation splits"""


class CityScapes(Dataset):
    """CityScapes as batch dicts img/seg/label2/label7/label19/depth/name; seg = label<num_seg_classes>."""

    def __init__(self, dataroot: str, split: str, crop_h: int | None = None, crop_w: int | None = None,
                 eval_h: int | None = None, eval_w: int | None = None, small_res: bool = False,
                 num_seg_classes: int | None = 19):
        num_seg_classes = 19 if num_seg_classes is None else num_seg_classes
        if num_seg_classes not in SEG_CLASS_CHOICES:
            raise ValueError(f"CityScapes: the number of seg classes must be 2, 7 or 19 "
                             f"(tasks_num_class of seg), got {num_seg_classes}")
        self.dataroot = dataroot
        self.split = split
        self.small_res = small_res
        self.seg_key = SEG_CLASS_CHOICES[num_seg_classes]
        self.num_seg_classes = int(self.seg_key[len('label'):])
        self.entries = T.load_split_index(dataroot, JSON_NAME, split, 5, 'CityScapes', 'cityscapes', LAYOUT_TREE)
        self.augment = T.is_train_split(split)
        default_hw = (128, 256) if small_res else (256, 512)
        self.out_hw = T.resolve_output_size('CityScapes', split, crop_h, crop_w, eval_h, eval_w, default_hw)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        paths = dict(zip(('img', 'depth') + LABEL_KEYS,
                         (os.path.join(self.dataroot, rel) for rel in self.entries[index])))
        rgb = T.read_npy(paths['img'], 'CityScapes image')
        T.require_numeric(rgb, paths['img'], 'CityScapes image', 'float')
        T.require_shape(rgb, paths['img'], 'CityScapes image', (None, None, 3), ' (RGB in [0,1])')
        img = rgb[:, :, ::-1] * 255  # RGB [0,1] -> BGR [0,255]
        depth = T.read_npy(paths['depth'], 'CityScapes depth')
        T.require_numeric(depth, paths['depth'], 'CityScapes depth', 'float')
        T.require_shape(depth, paths['depth'], 'CityScapes depth', (None, None, 1))
        depth = T.invalidate_non_finite(depth, paths['depth'], 'CityScapes depth')
        labels = {}
        for key in LABEL_KEYS:
            label = T.read_npy(paths[key], f'CityScapes {key}')
            T.require_shape(label, paths[key], f'CityScapes {key}', (None, None))
            T.require_numeric(label, paths[key], f'CityScapes {key}', 'integral')
            labels[key] = label.astype(np.int64)[:, :, None]
        T.require_labels_below(labels[self.seg_key], paths[self.seg_key], f'CityScapes {self.seg_key}',
                               self.num_seg_classes, SEG_IGNORE)
        labels['depth'] = depth.astype(np.float32, copy=False)
        T.require_same_size({'img': img, **labels}, paths)

        if self.augment:
            pad_values = {'label2': SEG_IGNORE, 'label7': SEG_IGNORE, 'label19': SEG_IGNORE, 'depth': 0}
            img, labels = T.augment_train_sample(img, labels, pad_values, *self.out_hw)
        else:
            T.require_eval_size({'img': img, **labels}, paths, self.out_hw, 'CityScapes')

        sample = {'img': T.hwc_to_tensor(T.subtract_mean(img))}
        sample.update({key: T.hwc_to_tensor(labels[key]) for key in LABEL_KEYS})
        sample['seg'] = sample[self.seg_key]
        sample['depth'] = T.hwc_to_tensor(labels['depth'], np.float32)
        sample['name'] = os.path.basename(self.entries[index][0])
        return sample

    def name(self) -> str:
        return 'CityScapes'

    def __repr__(self) -> str:
        return (f"CityScapes(dataroot='{self.dataroot}', split='{self.split}', n={len(self)}, size={self.out_hw}, "
                f"seg={self.seg_key}, augment={self.augment})")
