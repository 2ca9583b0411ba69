"""Dataset loaders (docs/original.md §9): batch keys/dtypes/value conventions, augmentation, samples
folder, bad input."""
from __future__ import annotations

import json
import os
import random
import shutil

import cv2
import numpy as np
import pytest
import torch

from dataloaders import (IMG_MEAN, build_dataset, build_dataset_from_config, build_loader,
                         is_samples_folder)
from dataloaders import transforms as T
from tools.benchmark_data import main as benchmark_main
from dataloaders.nyu_v2 import decode_normals

H, W = 48, 64          # generated size = eval size of the fixtures
CROP = (40, 40)
EVAL = dict(eval_h=H, eval_w=W)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='session')
def roots(tmp_path_factory) -> dict[str, str]:
    """One tiny generated dataset per layout."""
    from dataloaders.synthetic import generate_dataset
    base = tmp_path_factory.mktemp('datasets')
    out = {}
    for layout in ('nyu_v2', 'cityscapes', 'taskonomy'):
        out[layout] = str(base / layout)
        generate_dataset(layout, out[layout], num_train=5, num_test=2, height=H, width=W, seed=0,
                         progress=False)
    return out


def split_entries(root: str, json_name: str, split: str) -> list[list[str]]:
    with open(os.path.join(root, json_name)) as f:
        return json.load(f)[split]


def copy_tree(src: str, dst) -> str:
    dst = str(dst)
    shutil.copytree(src, dst)
    return dst


def scripted_random(monkeypatch, values: list[float]) -> None:
    """Make python `random.random()` return `values` in order (scale draw, then mirror draw)."""
    it = iter(values)
    monkeypatch.setattr(random, 'random', lambda: next(it))


# --------------------------------------------------------------------------- NYU v2

def test_nyu_eval_sample_matches_files(roots):
    root = roots['nyu_v2']
    ds = build_dataset('NYU_v2', root, 'test', **EVAL)
    img_rel, seg_rel, normal_rel, depth_rel = split_entries(root, 'nyu_v2_3task.json', 'test')[0]
    s = ds[0]
    assert set(s) == {'img', 'seg', 'normal', 'depth', 'name'}
    assert s['img'].dtype == torch.float32 and s['img'].shape == (3, H, W)
    assert s['seg'].dtype == torch.uint8 and s['seg'].shape == (1, H, W)
    assert s['normal'].dtype == torch.uint8 and s['normal'].shape == (3, H, W)
    assert s['depth'].dtype == torch.float32 and s['depth'].shape == (1, H, W)
    assert s['name'] == os.path.basename(img_rel)
    bgr = cv2.imread(os.path.join(root, img_rel))
    np.testing.assert_allclose(s['img'].numpy(), (bgr.astype(np.float64) - IMG_MEAN).transpose(2, 0, 1), atol=1e-5)
    seg = cv2.imread(os.path.join(root, seg_rel), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(s['seg'][0].numpy(), seg)
    assert set(np.unique(seg)) <= set(range(40)) | {255}
    normal = cv2.imread(os.path.join(root, normal_rel))            # raw B,G,R channels
    assert np.array_equal(s['normal'].numpy().transpose(1, 2, 0), normal)
    invalid = np.all(normal == 255, axis=2)
    assert invalid.any() and (~invalid).any()
    decoded = normal[~invalid].astype(np.float64) / 127.5 - 1
    assert np.median(np.abs(np.linalg.norm(decoded, axis=1) - 1)) < 0.02   # (n+1)*127.5 encoding
    depth = np.load(os.path.join(root, depth_rel))
    assert np.array_equal(s['depth'][0].numpy(), depth.astype(np.float32))


def test_nyu_train_split_is_augmented_to_crop(roots):
    for split in ('train', 'train1', 'train2'):
        ds = build_dataset('NYU_v2', roots['nyu_v2'], split, crop_h=CROP[0], crop_w=CROP[1], **EVAL)
        s = ds[len(ds) - 1]
        assert s['img'].shape == (3, *CROP) and s['seg'].shape == (1, *CROP)
        assert s['normal'].shape == (3, *CROP) and s['depth'].shape == (1, *CROP)
        assert s['seg'].dtype == torch.uint8 and s['normal'].dtype == torch.uint8
        assert s['depth'].dtype == torch.float32


def test_nyu_padding_values_with_forced_small_scale(roots, monkeypatch):
    ds = build_dataset('NYU_v2', roots['nyu_v2'], 'train', crop_h=CROP[0], crop_w=CROP[1])
    scripted_random(monkeypatch, [0.0, 0.0])    # scale 0.5 -> 24x32 inside a 40x40 crop, no mirror
    s = ds[0]
    top, left = (CROP[0] - H // 2) // 2, (CROP[1] - W // 2) // 2   # centred padding, crop offset 0
    inside = np.zeros(CROP, bool)
    inside[top:top + H // 2, left:left + W // 2] = True
    img = s['img'].numpy()
    assert np.allclose(img[:, ~inside], -IMG_MEAN[:, None])
    assert (s['seg'][0].numpy()[~inside] == 255).all()
    assert (s['normal'].numpy()[:, ~inside] == 255).all()
    assert (s['depth'][0].numpy()[~inside] == 0).all()


def test_nyu_mirror_flips_image_and_labels_together(roots, monkeypatch):
    root = roots['nyu_v2']
    plain = build_dataset('NYU_v2', root, 'train', crop_h=H, crop_w=W)
    scripted_random(monkeypatch, [0.5, 0.0])    # scale 1.0, no mirror, crop = whole image
    ref = plain[0]
    scripted_random(monkeypatch, [0.5, 0.9])    # scale 1.0, mirror
    flipped = plain[0]
    for key in ('img', 'seg', 'normal', 'depth'):
        assert torch.equal(flipped[key], ref[key].flip(-1)), key   # faithful: raw normals not negated

    decoded = build_dataset('NYU_v2', root, 'train', crop_h=H, crop_w=W, decode_normals=True)
    scripted_random(monkeypatch, [0.5, 0.0])
    ref = decoded[0]
    scripted_random(monkeypatch, [0.5, 0.9])
    flipped = decoded[0]
    expected = ref['normal'].flip(-1)
    expected[0] = -expected[0]
    assert torch.equal(flipped['normal'], expected)
    assert torch.equal(flipped['seg'], ref['seg'].flip(-1))


def test_nyu_decode_normals(roots):
    root = roots['nyu_v2']
    raw = build_dataset('NYU_v2', root, 'test', **EVAL)[0]['normal'].numpy().transpose(1, 2, 0)
    s = build_dataset('NYU_v2', root, 'test', decode_normals=True, **EVAL)[0]
    assert s['normal'].dtype == torch.float32 and s['normal'].shape == (3, H, W)
    n = s['normal'].numpy().transpose(1, 2, 0)
    norm = np.linalg.norm(n, axis=2)
    invalid = np.all(raw == 255, axis=2)
    assert (norm[invalid] == 0).all()
    assert np.allclose(norm[norm > 0], 1, atol=1e-5) and (norm[~invalid] > 0).mean() > 0.9
    # x comes from the PNG's R channel (cv2 channel 2), z from B
    valid = norm > 0
    assert np.corrcoef(n[..., 0][valid], raw[..., 2][valid].astype(float))[0, 1] > 0.9
    assert np.corrcoef(n[..., 2][valid], raw[..., 0][valid].astype(float))[0, 1] > 0.9


def test_decode_normals_rules():
    bgr = np.array([[[255, 255, 255], [127, 127, 127], [128, 128, 255], [255, 128, 128]]], np.uint8)
    n = decode_normals(bgr)
    assert n.dtype == np.float32 and n.shape == (1, 4, 3)
    assert (n[0, 0] == 0).all() and (n[0, 1] == 0).all()       # invalid and "zero normal" -> 0
    np.testing.assert_allclose(n[0, 2], [1, 0, 0], atol=1e-2)    # R=255 -> +x
    np.testing.assert_allclose(n[0, 3], [0, 0, 1], atol=1e-2)    # B=255 -> +z


def test_decoded_normals_pad_with_zero(roots, monkeypatch):
    ds = build_dataset('NYU_v2', roots['nyu_v2'], 'train', crop_h=CROP[0], crop_w=CROP[1], decode_normals=True)
    scripted_random(monkeypatch, [0.0, 0.0])
    s = ds[0]
    assert s['normal'].dtype == torch.float32
    assert (s['normal'][:, 0, :] == 0).all() and (s['seg'][0, 0, :] == 255).all()


# --------------------------------------------------------------------------- samples folder

def snapshot(path: str) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            out[os.path.relpath(full, path)] = (st.st_mtime_ns, st.st_size)
    return out


def make_samples_folder(tmp_path) -> str:
    """A generated samples folder (no json) plus one image without partner files."""
    from dataloaders.synthetic import generate_dataset
    folder = str(tmp_path / 'samples')
    generate_dataset('nyu_v2_samples', folder, num_test=3, height=H, width=W, seed=1, progress=False)
    shutil.copy(os.path.join(folder, 'img', '0000.png'), os.path.join(folder, 'img', 'zz_no_partners.png'))
    return folder


def test_samples_folder_is_read_without_writing(roots, tmp_path):
    folder = make_samples_folder(tmp_path)
    assert is_samples_folder(folder) and not is_samples_folder(roots['nyu_v2'])
    before = snapshot(folder)
    ds = build_dataset('NYU_v2', folder, 'test', **EVAL)
    ids = sorted(f[:-4] for f in os.listdir(os.path.join(folder, 'seg')))
    assert ids == ['0000', '0001', '0002']
    assert [ds[i]['name'] for i in range(len(ds))] == [i + '.png' for i in ids]
    batch = next(iter(build_loader(ds, 2, shuffle=False, drop_last=False, num_workers=0)))
    assert batch['img'].shape == (2, 3, H, W)
    assert snapshot(folder) == before
    with pytest.raises(ValueError, match="only split is 'test'"):
        build_dataset('NYU_v2', folder, 'train', crop_h=8, crop_w=8)


def test_shipped_samples_folder_if_present():
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'nyu_v2_samples')
    if not is_samples_folder(folder) or not os.listdir(os.path.join(folder, 'img')):
        pytest.skip('nyu_v2_samples is not populated')
    before = snapshot(folder)
    first = sorted(os.listdir(os.path.join(folder, 'img')))[0]
    h, w = cv2.imread(os.path.join(folder, 'img', first)).shape[:2]
    s = build_dataset('NYU_v2', folder, 'test', eval_h=h, eval_w=w)[0]
    assert s['img'].shape == (3, h, w)
    assert snapshot(folder) == before


# --------------------------------------------------------------------------- CityScapes

@pytest.mark.parametrize('num_classes', [2, 7, 19])
def test_cityscapes_eval_sample(roots, num_classes):
    root = roots['cityscapes']
    ds = build_dataset('CityScapes', root, 'test', num_seg_classes=num_classes, **EVAL)
    img_rel, depth_rel, *label_rels = split_entries(root, 'cityscape.json', 'test')[0]
    s = ds[0]
    assert set(s) == {'img', 'seg', 'label2', 'label7', 'label19', 'depth', 'name'}
    rgb = np.load(os.path.join(root, img_rel))
    np.testing.assert_allclose(s['img'].numpy(),
                               (rgb[:, :, ::-1] * 255 - IMG_MEAN.astype(np.float64)).transpose(2, 0, 1), atol=1e-4)
    for key, rel in zip(('label2', 'label7', 'label19'), label_rels):
        assert s[key].shape == (1, H, W) and s[key].dtype == torch.int64
        assert np.array_equal(s[key][0].numpy(), np.load(os.path.join(root, rel)).astype(np.int64))
    assert torch.equal(s['seg'], s[f'label{num_classes}'])
    assert s['depth'].shape == (1, H, W) and s['depth'].dtype == torch.float32
    assert -1 in ds[1]['label19'] or -1 in s['label19']                      # ignore = -1
    assert s['seg'].max() < num_classes


def test_cityscapes_small_res_default_size(roots):
    ds = build_dataset('CityScapes', roots['cityscapes'], 'test', small_res=True)
    assert ds.out_hw == (128, 256)
    assert build_dataset('CityScapes', roots['cityscapes'], 'test').out_hw == (256, 512)
    with pytest.raises(ValueError, match='exactly 128x256'):
        ds[0]


def test_cityscapes_train_padding_is_minus_one(roots, monkeypatch):
    ds = build_dataset('CityScapes', roots['cityscapes'], 'train', crop_h=CROP[0], crop_w=CROP[1])
    scripted_random(monkeypatch, [0.0, 0.0])
    s = ds[0]
    for key in ('seg', 'label2', 'label7', 'label19'):
        assert s[key].shape == (1, *CROP) and (s[key][0, 0] == -1).all()
    assert (s['depth'][0, 0] == 0).all()
    assert torch.allclose(s['img'][:, 0, 0], -torch.from_numpy(IMG_MEAN))


def test_cityscapes_accepts_integral_float_labels_and_rejects_bad_depth(roots, tmp_path):
    root = copy_tree(roots['cityscapes'], tmp_path / 'cs')
    img_rel, depth_rel, l2_rel, _, _ = split_entries(root, 'cityscape.json', 'test')[0]
    label = np.load(os.path.join(root, l2_rel))
    np.save(os.path.join(root, l2_rel), label.astype(np.float32))
    ds = build_dataset('CityScapes', root, 'test', num_seg_classes=2, **EVAL)
    assert np.array_equal(ds[0]['seg'][0].numpy(), label.astype(np.int64))
    np.save(os.path.join(root, l2_rel), label.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match=os.path.basename(l2_rel)):
        ds[0]
    np.save(os.path.join(root, l2_rel), label)
    np.save(os.path.join(root, depth_rel), np.zeros((H, W), np.float32))
    with pytest.raises(ValueError, match=r'must have shape \[\*,\*,1\]'):
        ds[0]


# --------------------------------------------------------------------------- Taskonomy

def test_taskonomy_eval_sample_value_conventions(roots):
    root = roots['taskonomy']
    ds = build_dataset('Taskonomy', root, 'test', **EVAL)
    paths = [os.path.join(root, p) for p in split_entries(root, 'taskonomy.json', 'test')[0]]
    s = ds[0]
    keys = {'img', 'seg', 'seg_mask', 'normal', 'normal_mask', 'depth', 'depth_mask', 'keypoint', 'edge', 'name'}
    assert set(s) == keys
    assert s['seg'].dtype == torch.int32
    for key in keys - {'seg', 'name'}:
        assert s[key].dtype == torch.float32, key
        assert s[key].shape[1:] == (H, W)
    read = lambda p: cv2.imread(p, cv2.IMREAD_UNCHANGED)  # noqa: E731
    np.testing.assert_allclose(s['img'].numpy(), (read(paths[0]) - IMG_MEAN).transpose(2, 0, 1), atol=1e-4)
    raw_seg = read(paths[1]).astype(np.int64)
    assert np.array_equal(s['seg'][0].numpy(), np.maximum(raw_seg, 1) - 1)     # raw 0,1 -> 0; k -> k-1
    prior = np.load(os.path.join(root, 'semseg_prior_factor.npy'))
    np.testing.assert_allclose(s['seg_mask'][0].numpy(), (raw_seg > 0) * prior[np.maximum(raw_seg, 1) - 1])
    assert ds.class_weights.dtype == torch.float32 and torch.equal(ds.class_weights, torch.from_numpy(prior).float())
    rgb_sn = read(paths[2])[:, :, ::-1]
    np.testing.assert_allclose(s['normal'].numpy(), (rgb_sn / 255 * 2 - 1).transpose(2, 0, 1), atol=1e-6)
    d = read(paths[3]).astype(np.float64)
    np.testing.assert_allclose(s['depth'][0].numpy(), np.log1p(d) / np.log(2 ** 16), rtol=1e-5)
    assert np.array_equal(s['depth_mask'][0].numpy(), (d < 64500).astype(np.float32))
    assert torch.equal(s['normal_mask'], s['depth_mask'].expand(3, -1, -1))
    kp = read(paths[4]) / 2 ** 16
    np.testing.assert_allclose(s['keypoint'][0].numpy(), np.clip(kp, 0, 0.005) / 0.005 * 2 - 1, atol=1e-5)
    edge = read(paths[5]) / 2 ** 16
    np.testing.assert_allclose(s['edge'][0].numpy(), np.clip(edge, 0, 0.08) / 0.08 * 2 - 1, atol=1e-5)
    assert s['name'] == '-'.join(split_entries(root, 'taskonomy.json', 'test')[0][0].split('/'))


def test_taskonomy_default_read_size_and_splits(roots):
    ds = build_dataset('Taskonomy', roots['taskonomy'], 'test_small')
    assert ds.read_hw == (256, 256) and ds[0]['img'].shape == (3, 256, 256)   # nearest-resized on read
    assert len(build_dataset('Taskonomy', roots['taskonomy'], 'val', **EVAL)) > 0


def test_taskonomy_train_padding_and_mirror(roots, monkeypatch):
    ds = build_dataset('Taskonomy', roots['taskonomy'], 'train', crop_h=CROP[0], crop_w=CROP[1], **EVAL)
    scripted_random(monkeypatch, [0.0, 0.0])
    s = ds[0]
    for key in ('seg', 'seg_mask', 'normal', 'normal_mask', 'depth', 'depth_mask', 'keypoint', 'edge'):
        assert s[key].shape[1:] == CROP and (s[key][:, 0, :] == 255).all(), key
    full = build_dataset('Taskonomy', roots['taskonomy'], 'train', crop_h=H, crop_w=W, **EVAL)
    scripted_random(monkeypatch, [0.5, 0.0])
    ref = full[0]
    scripted_random(monkeypatch, [0.5, 0.9])
    flipped = full[0]
    for key in ('img', 'seg', 'depth', 'keypoint', 'edge', 'depth_mask'):
        assert torch.equal(flipped[key], ref[key].flip(-1)), key
    expected = ref['normal'].flip(-1)
    expected[0] = -expected[0]
    assert torch.allclose(flipped['normal'], expected, atol=1e-4)   # 1e-4: float32 shift by the ignore value


# --------------------------------------------------------------------------- augmentation functions

def original_pad_crop(img, shifted, plain, crop_h, crop_w, ignore):
    """Transcription of the original's crop (docs/original.md §9): concatenate, shift, zero-pad, crop, shift back."""
    label = np.concatenate(shifted, axis=2).astype('float32')
    label -= ignore
    combined = np.concatenate([img, label] + plain, axis=2)
    h, w = img.shape[:2]
    pad = np.zeros((max(h, crop_h), max(w, crop_w), combined.shape[2]))
    oh, ow = (pad.shape[0] - h) // 2, (pad.shape[1] - w) // 2
    pad[oh:oh + h, ow:ow + w] = combined
    sh, sw = np.random.randint(0, pad.shape[0] - crop_h + 1), np.random.randint(0, pad.shape[1] - crop_w + 1)
    crop = pad[sh:sh + crop_h, sw:sw + crop_w]
    c = img.shape[2]
    out_shifted, pos = [], c
    for lab in shifted:
        out_shifted.append(crop[:, :, pos:pos + lab.shape[2]] + ignore)
        pos += lab.shape[2]
    return crop[:, :, :c], out_shifted, [crop[:, :, pos:]]


@pytest.mark.parametrize('size, crop', [((24, 30), (32, 32)), ((40, 50), (16, 20)), ((20, 50), (30, 30))])
def test_pad_crop_equals_original_transcription(size, crop):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size + (3,)).astype(np.uint8)
    seg = rng.integers(0, 40, size + (1,)).astype(np.uint8)
    sn = rng.uniform(-1, 1, size + (3,)).astype(np.float32)        # Taskonomy-like float label
    depth = rng.uniform(0.5, 10, size + (1,)).astype(np.float32)
    np.random.seed(7)
    ref_img, (ref_seg, ref_sn), (ref_depth,) = original_pad_crop(img, [seg, sn], [depth], *crop, 255)
    np.random.seed(7)
    out_img, out = T.pad_and_random_crop(img, {'seg': seg, 'sn': sn, 'depth': depth},
                                         {'seg': 255, 'sn': 255, 'depth': 0}, *crop)
    assert out_img.shape == crop + (3,)
    assert np.array_equal(out_img, ref_img)
    assert np.array_equal(out['seg'], ref_seg) and out['seg'].dtype == np.uint8
    assert np.array_equal(out['sn'], ref_sn.astype(np.float32))    # same float32 rounding as the original
    assert np.array_equal(out['depth'], ref_depth)


def test_pad_crop_centres_padding_and_uses_forced_offsets():
    img = np.full((4, 6, 3), 9, np.uint8)
    seg = np.full((4, 6, 1), 3, np.uint8)
    out_img, out = T.pad_and_random_crop(img, {'seg': seg}, {'seg': 255}, 8, 10, offsets=(0, 0))
    assert (out_img[2:6, 2:8] == 9).all() and out_img.sum() == 9 * 4 * 6 * 3
    assert (out['seg'][2:6, 2:8] == 3).all() and (out['seg'] == 255).sum() == 80 - 24
    assert np.allclose(T.subtract_mean(out_img)[0, 0], -IMG_MEAN)
    _, out = T.pad_and_random_crop(np.zeros((10, 10, 3)), {'seg': np.arange(100).reshape(10, 10, 1)},
                                   {'seg': -1}, 3, 3, offsets=(2, 5))
    assert np.array_equal(out['seg'][..., 0], np.arange(100).reshape(10, 10)[2:5, 5:8])


def test_random_scale_and_mirror():
    img = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    labels = {'seg': (np.arange(200) % 7).reshape(10, 20, 1).astype(np.uint8),
              'depth': np.random.default_rng(0).uniform(1, 2, (10, 20, 1)).astype(np.float32)}
    s_img, s_lab = T.random_scale(img, labels, scale=1.37)
    assert s_img.shape == (13, 27, 3) and s_lab['seg'].shape == (13, 27, 1) and s_lab['depth'].shape == (13, 27, 1)
    assert set(np.unique(s_lab['seg'])) <= set(np.unique(labels['seg']))          # nearest: no new values
    assert np.isin(s_lab['depth'], labels['depth']).all()
    m_img, m_lab = T.random_mirror(img, {'n': labels['depth'].repeat(3, 2)}, flip=True, negate_x=('n',))
    assert np.array_equal(m_img, img[:, ::-1])
    assert np.array_equal(m_lab['n'][..., 0], -labels['depth'][:, ::-1, 0])
    assert np.array_equal(m_lab['n'][..., 1], labels['depth'][:, ::-1, 0])
    same_img, same_lab = T.random_mirror(img, labels, flip=False)
    assert same_img is img and same_lab is labels


def test_augmentation_is_reproducible_given_seeds(roots):
    ds = build_dataset('NYU_v2', roots['nyu_v2'], 'train', crop_h=CROP[0], crop_w=CROP[1])
    draws = []
    for _ in range(2):
        random.seed(3)
        np.random.seed(3)
        draws.append([ds[i] for i in range(3)])
    for a, b in zip(*draws):
        assert all(torch.equal(a[k], b[k]) for k in ('img', 'seg', 'normal', 'depth'))


# --------------------------------------------------------------------------- builders and loaders

def test_build_dataset_from_config(roots):
    opt = {'dataload': {'dataset': 'CityScapes', 'dataroot': roots['cityscapes'], 'crop_h': 24, 'crop_w': 32,
                        'eval_h': H, 'eval_w': W, 'small_res': False},
           'tasks': ['seg', 'depth'], 'tasks_num_class': [7, 1]}
    train = build_dataset_from_config(opt, 'train1')
    assert train.out_hw == (24, 32) and train.seg_key == 'label7'
    test = build_dataset_from_config(opt, 'test')
    assert test.out_hw == (H, W) and not test.augment
    nyu = {'dataload': {'dataset': 'NYU_v2', 'dataroot': roots['nyu_v2'], 'crop_h': 24, 'crop_w': 32,
                        'small_res': False}, 'tasks': ['seg', 'sn'], 'tasks_num_class': [40, 3],
           'quirks': {'decode_normals': True}}
    assert build_dataset_from_config(nyu, 'train').decode_normals
    assert build_dataset_from_config(nyu, 'test').out_hw == (480, 640)       # eval_h/eval_w absent


class _RandomDraws(torch.utils.data.Dataset):
    """Returns the python and numpy random draws a worker makes (to check worker seeding)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.tensor([random.random(), np.random.rand()], dtype=torch.float64)


def test_build_loader_seeds_workers_reproducibly():
    def draws(seed):
        loader = build_loader(_RandomDraws(), 1, shuffle=False, drop_last=False, num_workers=2, seed=seed)
        assert loader.pin_memory == torch.cuda.is_available()
        return torch.cat(list(loader))
    a, b, c = draws(5), draws(5), draws(6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])          # items 0 and 1 come from different workers


def test_benchmark_runs(roots, capsys):
    benchmark_main(['--layout', 'nyu_v2', '--dataroot', roots['nyu_v2'], '--num-workers', '0',
                    '--batch-size', '2', '--crop', '32', '32', '--iters', '4'])
    assert 'img/s' in capsys.readouterr().out


# --------------------------------------------------------------------------- bad input

def test_missing_dataroot_tells_how_to_generate(tmp_path):
    missing = str(tmp_path / 'nowhere')
    for dataset, layout in (('NYU_v2', 'nyu_v2'), ('CityScapes', 'cityscapes'), ('Taskonomy', 'taskonomy')):
        with pytest.raises(FileNotFoundError) as err:
            build_dataset(dataset, missing, 'test')
        assert f'python tools/synthetic_data.py --layout {layout} --out {missing}' in str(err.value)
        assert 'Expected layout' in str(err.value)


def test_missing_json_unknown_split_unknown_dataset(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match='cityscape.json'):
        build_dataset('CityScapes', str(tmp_path), 'test')
    with pytest.raises(ValueError, match=r"split 'bogus'.*available splits: \[.*'test'.*'train1'"):
        build_dataset('Taskonomy', roots['taskonomy'], 'bogus')
    with pytest.raises(ValueError, match=r"unknown dataset 'nyu'.*CityScapes.*NYU_v2.*Taskonomy"):
        build_dataset('nyu', roots['nyu_v2'], 'test')
    with pytest.raises(ValueError, match='needs crop_h and crop_w'):
        build_dataset('NYU_v2', roots['nyu_v2'], 'train')
    with pytest.raises(FileNotFoundError, match='semseg_prior_factor.npy'):
        root = copy_tree(roots['taskonomy'], tmp_path / 'tk')
        os.remove(os.path.join(root, 'semseg_prior_factor.npy'))
        build_dataset('Taskonomy', root, 'test')


def test_bad_files_are_named(roots, tmp_path):
    root = copy_tree(roots['nyu_v2'], tmp_path / 'nyu')
    img_rel, seg_rel, normal_rel, depth_rel = split_entries(root, 'nyu_v2_3task.json', 'test')[0]
    ds = build_dataset('NYU_v2', root, 'test', **EVAL)
    path = lambda rel: os.path.join(root, rel)  # noqa: E731

    with pytest.raises(ValueError, match=r'exactly 480x640.*pre-tiled'):
        build_dataset('NYU_v2', root, 'test')[0]           # default eval size != data size
    depth = np.load(path(depth_rel))
    np.save(path(depth_rel), depth.astype(np.int32))
    with pytest.raises(ValueError, match=os.path.basename(depth_rel) + '.*floating'):
        ds[0]
    with open(path(depth_rel), 'wb') as f:
        f.write(b'not an npy')
    with pytest.raises(ValueError, match=os.path.basename(depth_rel) + '.*corrupt'):
        ds[0]
    np.save(path(depth_rel), depth[:-2])
    with pytest.raises(ValueError, match=r'same height x width'):
        ds[0]
    with open(path(normal_rel), 'wb') as f:
        f.write(b'\x89PNG garbage')
    with pytest.raises(ValueError, match=os.path.basename(normal_rel) + '.*corrupt PNG'):
        ds[0]
    cv2.imwrite(path(seg_rel), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match=os.path.basename(seg_rel) + '.*1-channel uint8'):
        ds[0]
    os.remove(path(img_rel))
    with pytest.raises(FileNotFoundError, match=os.path.basename(img_rel)):
        ds[0]                                               # no silent retry with another item
    assert ds[1]['img'].shape == (3, H, W)


def test_taskonomy_bad_seg_and_missing_file(roots, tmp_path):
    root = copy_tree(roots['taskonomy'], tmp_path / 'tk')
    entry = split_entries(root, 'taskonomy.json', 'test')[0]
    ds = build_dataset('Taskonomy', root, 'test', **EVAL)
    cv2.imwrite(os.path.join(root, entry[1]), np.full((H, W), 40, np.uint8))
    with pytest.raises(ValueError, match=os.path.basename(entry[1]) + '.*raw class 40'):
        ds[0]
    shutil.copy(os.path.join(roots['taskonomy'], entry[1]), os.path.join(root, entry[1]))
    cv2.imwrite(os.path.join(root, entry[3]), np.zeros((H, W), np.uint8))   # depth must be 16-bit
    with pytest.raises(ValueError, match=os.path.basename(entry[3]) + '.*1-channel uint16'):
        ds[0]
    os.remove(os.path.join(root, entry[1]))
    with pytest.raises(FileNotFoundError, match=os.path.basename(entry[1])):
        ds[0]


def test_subtract_mean_matches_float64_path():
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (8, 9, 3)).astype(np.uint8), rng.uniform(0, 255, (8, 9, 3)).astype(np.float32),
                rng.uniform(0, 255, (8, 9, 3))):
        out = T.subtract_mean(img)
        assert out.dtype == np.float32
        assert np.array_equal(out, (img.astype(np.float64) - IMG_MEAN).astype(np.float32))
