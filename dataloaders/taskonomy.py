"""Tiny-Taskonomy loader (docs/original.md §9.3): json-indexed PNGs for seg, sn, depth, keypoint, edge."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders import transforms as T

JSON_NAME = 'taskonomy.json'
PRIOR_NAME = 'semseg_prior_factor.npy'
DEFAULT_HW = (256, 256)
IGNORE = 255
DEPTH_MASK_BELOW = 64500
LAYOUT_TREE = """  <dataroot>/taskonomy.json   {"train": [[img, seg, sn, depth, keypoint, edge], ...], "train1": [...],
                               "train2": [...], "test": [...], "test_small": [...]}  (PNG paths relative to dataroot)
  <dataroot>/semseg_prior_factor.npy   float [17] class weights
  img 8-bit RGB; seg 8-bit gray (raw 0 and 1 -> class 0, raw k -> k-1); sn 8-bit RGB;
  depth, keypoint, edge 16-bit gray"""

# float32 constants so the arithmetic stays float32, as in the original (numpy 1 value-based casting)
_F = np.float32


class Taskonomy(Dataset):
    """Tiny-Taskonomy as batch dicts img/seg/seg_mask/normal/normal_mask/depth/depth_mask/keypoint/edge/name.

    Every file is resized with nearest to the eval size (256x256 unless eval_h/eval_w say
    otherwise) when read; train splits are then augmented and cropped to crop_h x crop_w.
    `class_weights` holds semseg_prior_factor.npy (the seg cross-entropy weights).
    """

    def __init__(self, dataroot: str, split: str, crop_h: int | None = None, crop_w: int | None = None,
                 eval_h: int | None = None, eval_w: int | None = None):
        self.dataroot = dataroot
        self.split = split
        self.entries = T.load_split_index(dataroot, JSON_NAME, split, 6, 'Taskonomy', 'taskonomy', LAYOUT_TREE)
        self.augment = T.is_train_split(split)
        self.read_hw = T.resolve_output_size('Taskonomy', 'test', None, None, eval_h, eval_w, DEFAULT_HW)
        self.out_hw = T.resolve_output_size('Taskonomy', split, crop_h, crop_w, eval_h, eval_w, DEFAULT_HW)
        prior_path = os.path.join(dataroot, PRIOR_NAME)
        prior = T.read_npy(prior_path, 'Taskonomy seg class prior')
        T.require_numeric(prior, prior_path, 'Taskonomy seg class prior', 'float')
        T.require_shape(prior, prior_path, 'Taskonomy seg class prior', (None,))
        self.prior = prior.astype(np.float32)
        self.class_weights = torch.from_numpy(self.prior.copy())

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, path: str, what: str, channels: int, dtypes: tuple) -> np.ndarray:
        arr = T.read_png(path, f'Taskonomy {what}', channels, dtypes)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return T.resize_nearest(arr, *self.read_hw)

    def __getitem__(self, index: int) -> dict:
        rel_paths = self.entries[index]
        paths = dict(zip(('img', 'seg', 'sn', 'depth', 'keypoint', 'edge'),
                         (os.path.join(self.dataroot, rel) for rel in rel_paths)))
        img = self._read(paths['img'], 'image', 3, (np.uint8,)).astype(np.float32)  # cv2 reads BGR
        seg_raw = self._read(paths['seg'], 'segmentation', 1, (np.uint8, np.uint16))
        sn_bgr = self._read(paths['sn'], 'surface normal', 3, (np.uint8,))
        depth_raw = self._read(paths['depth'], 'depth', 1, (np.uint16,)).astype(np.float32)
        keypoint = self._read(paths['keypoint'], 'keypoint', 1, (np.uint16,)).astype(np.float32)
        edge = self._read(paths['edge'], 'edge', 1, (np.uint16,)).astype(np.float32)

        # raw 0 (unlabelled) and raw 1 both become class 0; raw k -> k-1
        seg = np.maximum(seg_raw.astype(np.int32), 1) - 1
        if seg.max() >= len(self.prior):
            raise ValueError(f"Taskonomy segmentation file '{paths['seg']}' has raw class {seg.max() + 1}, "
                             f"but '{PRIOR_NAME}' has only {len(self.prior)} class weights "
                             f"(raw values 0..{len(self.prior)} expected)")
        labels = {
            'seg': seg,
            'seg_mask': (seg_raw > 0.1).astype(np.float32) * self.prior[seg],  # returned, unused by losses
            'normal': (sn_bgr[:, :, ::-1].astype(np.float32) / _F(255)) * _F(2) - _F(1),  # RGB = x,y,z in [-1,1]
            'depth': np.log(_F(1) + depth_raw) / _F(np.log(2 ** 16)),
            'depth_mask': (depth_raw < DEPTH_MASK_BELOW).astype(np.float32),
            'keypoint': np.clip(keypoint / _F(2 ** 16), _F(0), _F(0.005)) / _F(0.005) * _F(2) - _F(1),
            'edge': np.clip(edge / _F(2 ** 16), _F(0), _F(0.08)) / _F(0.08) * _F(2) - _F(1),
        }
        if self.augment:
            pad_values = {name: IGNORE for name in labels}
            img, labels = T.augment_train_sample(img, labels, pad_values, *self.out_hw, negate_x=('normal',))

        depth_mask = labels['depth_mask']
        return {
            'img': T.hwc_to_tensor(T.subtract_mean(img)),
            'seg': T.hwc_to_tensor(labels['seg'], np.int32),
            'seg_mask': T.hwc_to_tensor(labels['seg_mask'], np.float32),
            'normal': T.hwc_to_tensor(labels['normal'], np.float32),
            'normal_mask': T.hwc_to_tensor(np.repeat(depth_mask, 3, axis=2), np.float32),
            'depth': T.hwc_to_tensor(labels['depth'], np.float32),
            'depth_mask': T.hwc_to_tensor(depth_mask, np.float32),
            'keypoint': T.hwc_to_tensor(labels['keypoint'], np.float32),
            'edge': T.hwc_to_tensor(labels['edge'], np.float32),
            'name': '-'.join(rel_paths[0].replace('\\', '/').split('/')),
        }

    def name(self) -> str:
        return 'Taskonomy'

    def __repr__(self) -> str:
        return (f"Taskonomy(dataroot='{self.dataroot}', split='{self.split}', n={len(self)}, "
                f"read_size={self.read_hw}, size={self.out_hw}, augment={self.augment})")
