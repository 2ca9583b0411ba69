"""Synthetic dataset generator: layouts, formats, determinism, and geometric consistency of the labels."""
import filecmp
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from dataloaders.synthetic import focal_length, generate_dataset, item_rng, make_sample
from dataloaders.synthetic.annotate import occlusion_edges, visible_keypoints
from dataloaders.synthetic.classes import (CITYSCAPES_19_TO_7, CITYSCAPES_7_TO_2, CITYSCAPES_CLASSES,
                                           INDOOR_KINDS, NYU40_CLASSES)
from dataloaders.synthetic.samples import EDGE_RAW_MAX, KEYPOINT_RAW_MAX, nyu_frame_widths
from dataloaders.synthetic.scene import BOX, PLANE, Box, Camera, Plane, Scene, cast, rotation_yaw_pitch_roll

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 48, 64
NUM_TRAIN, NUM_VAL, NUM_TEST = 5, 2, 3
INDEX_FILES = {"nyu_v2": "nyu_v2_3task.json", "cityscapes": "cityscape.json", "taskonomy": "taskonomy.json"}
ENTRY_LENGTHS = {"nyu_v2": 4, "cityscapes": 5, "taskonomy": 6}
FLOOR = NYU40_CLASSES.index("floor")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Each layout generated once at 48x64."""
    base = tmp_path_factory.mktemp("synthetic")
    out = {}
    for layout in ("nyu_v2", "cityscapes", "taskonomy", "nyu_v2_samples"):
        out[layout] = str(base / layout)
        stats = generate_dataset(layout, out[layout], num_train=NUM_TRAIN, num_test=NUM_TEST, num_val=NUM_VAL,
                                 height=H, width=W, seed=0, progress=False)
        assert stats["images_per_second"] > 0 and stats["height"] == H and stats["width"] == W
    return out


def _index(root, layout):
    with open(os.path.join(root, INDEX_FILES[layout])) as handle:
        return json.load(handle)


@pytest.mark.parametrize("layout", ["nyu_v2", "cityscapes", "taskonomy"])
def test_index_splits_partition_and_files_exist(roots, layout):
    index = _index(roots[layout], layout)
    assert set(index) == {"train", "train1", "train2", "val", "test", "test_small"}
    as_set = {name: {tuple(entry) for entry in entries} for name, entries in index.items()}
    assert len(index["train"]) == NUM_TRAIN and len(index["val"]) == NUM_VAL and len(index["test"]) == NUM_TEST
    assert (len(index["train1"]), len(index["train2"])) == (4, 1)  # 80/20
    assert as_set["train1"] | as_set["train2"] == as_set["train"] and not as_set["train1"] & as_set["train2"]
    assert not as_set["train"] & as_set["val"] and not as_set["train"] & as_set["test"]
    assert not as_set["val"] & as_set["test"]
    assert index["test_small"] == index["test"][:len(index["test_small"])] and index["test_small"]
    all_paths = [path for entries in index.values() for entry in entries for path in entry]
    assert len({path for entry in index["train"] + index["val"] + index["test"] for path in entry}) == \
        (NUM_TRAIN + NUM_VAL + NUM_TEST) * ENTRY_LENGTHS[layout]
    for entries in index.values():
        assert all(len(entry) == ENTRY_LENGTHS[layout] for entry in entries)
    assert all(not os.path.isabs(p) and os.path.isfile(os.path.join(roots[layout], p)) for p in all_paths)


def test_nyu_files_have_the_nyu_formats(roots):
    root = roots["nyu_v2"]
    img_path, seg_path, normal_path, depth_path = _index(root, "nyu_v2")["test"][1]
    assert img_path.startswith("img/") and seg_path.startswith("seg/") and normal_path.startswith("normal_mask/")
    assert depth_path.startswith("depth/") and depth_path.endswith(".npy")
    img = cv2.imread(os.path.join(root, img_path), cv2.IMREAD_UNCHANGED)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    # The file holds true RGB: cv2 (BGR) reversed equals the generator's RGB array of the same item.
    regenerated = make_sample("nyu_v2", item_rng(0, "test", 1), H, W).arrays
    assert np.array_equal(img[..., ::-1], regenerated["img"])

    seg_border, white_border, grey = nyu_frame_widths(W)
    seg = cv2.imread(os.path.join(root, seg_path), cv2.IMREAD_UNCHANGED)
    assert seg.shape == (H, W) and seg.dtype == np.uint8
    assert set(np.unique(seg)) <= set(range(40)) | {255}
    frame = np.ones((H, W), dtype=bool)
    frame[seg_border:-seg_border, seg_border:-seg_border] = False
    assert np.all(seg[frame] == 255) and (seg[~frame] != 255).mean() > 0.5  # ignore border, mostly labelled inside

    normal = cv2.imread(os.path.join(root, normal_path), cv2.IMREAD_UNCHANGED)[..., ::-1]  # back to R=x, G=y, B=z
    assert normal.shape == (H, W, 3) and normal.dtype == np.uint8
    white = np.all(normal == 255, axis=-1)
    b = white_border
    assert np.all(white[:b]) and np.all(white[-b:]) and np.all(white[:, :b]) and np.all(white[:, -b:])
    ring = np.zeros((H, W), dtype=bool)
    ring[b:-b, b:-b] = True
    ring[b + grey:-b - grey, b + grey:-b - grey] = False
    grey_pixels = np.all(normal == 127, axis=-1)
    assert np.all((grey_pixels | white)[ring]) and grey_pixels[ring].mean() > 0.5  # the (127,127,127) ring
    inner = np.zeros((H, W), dtype=bool)
    inner[b + grey:-b - grey, b + grey:-b - grey] = True
    valid = inner & ~white
    vectors = normal[valid].astype(np.float64) / 127.5 - 1.0
    assert valid.sum() > 0.5 * inner.sum()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=0.02)
    assert not np.array_equal(seg == 255, white)  # the two invalid masks differ

    depth = np.load(os.path.join(root, depth_path))
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert 0.2 < depth.min() and depth.max() < 12.0


def test_cityscapes_files_have_the_cityscapes_formats(roots):
    root = roots["cityscapes"]
    for entry in _index(root, "cityscapes")["train"]:
        img, depth, label2, label7, label19 = (np.load(os.path.join(root, p)) for p in entry)
        assert img.shape == (H, W, 3) and img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
        assert depth.shape == (H, W, 1) and depth.dtype == np.float32 and depth.min() >= 0.0
        for label in (label2, label7, label19):
            assert label.shape == (H, W) and label.dtype == np.int64
        assert label19.min() >= -1 and label19.max() < len(CITYSCAPES_CLASSES)
        ignore = label19 < 0
        assert np.array_equal(ignore, label7 < 0) and np.array_equal(ignore, label2 < 0)
        assert ignore[-1, W // 2] and depth[-1, W // 2, 0] == 0.0  # the ego vehicle at the bottom: void, no depth
        assert np.array_equal(label7[~ignore], CITYSCAPES_19_TO_7[label19[~ignore]])
        assert np.array_equal(label2[~ignore], CITYSCAPES_7_TO_2[label7[~ignore]])
        sky = label19 == CITYSCAPES_CLASSES.index("sky")
        assert np.all(depth[..., 0][sky] == 0.0) and np.all(depth[..., 0][~sky & ~ignore] > 0.0)


def test_taskonomy_files_have_the_taskonomy_formats(roots):
    root = roots["taskonomy"]
    prior = np.load(os.path.join(root, "semseg_prior_factor.npy"))
    assert prior.shape == (17,) and prior.dtype == np.float32 and np.all(prior > 0) and np.all(np.isfinite(prior))
    img_p, seg_p, sn_p, depth_p, kp_p, edge_p = _index(root, "taskonomy")["test"][0]
    img = Image.open(os.path.join(root, img_p))
    assert img.mode == "RGB" and img.size == (W, H)
    seg = np.array(Image.open(os.path.join(root, seg_p)))
    assert seg.dtype == np.uint8 and seg.shape == (H, W) and seg.max() <= 17 and (seg > 0).any()
    sn = Image.open(os.path.join(root, sn_p))
    assert sn.mode == "RGB"
    normals = np.asarray(sn, dtype=np.float64) / 127.5 - 1.0
    assert np.allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=0.02)
    raw = {}
    for name, path in (("depth", depth_p), ("keypoint", kp_p), ("edge", edge_p)):
        raw[name] = cv2.imread(os.path.join(root, path), cv2.IMREAD_UNCHANGED)
        assert raw[name].dtype == np.uint16 and raw[name].shape == (H, W), name
        assert np.array(Image.open(os.path.join(root, path))).max() == raw[name].max()  # PIL reads 16 bits too
    valid = raw["depth"] < 64500
    assert valid.mean() > 0.5 and np.all(raw["depth"][~valid] == 65535)
    assert 0.2 * 512 < raw["depth"][valid].min() and raw["depth"][valid].max() < 12 * 512  # 1/512 m units
    assert 0 < raw["keypoint"].max() <= KEYPOINT_RAW_MAX <= 0.005 * 2**16
    assert raw["edge"].max() <= EDGE_RAW_MAX <= 0.08 * 2**16


def test_samples_layout_matches_nyu_test_items(roots):
    root = roots["nyu_v2_samples"]
    assert sorted(os.listdir(root)) == ["depth", "img", "normal_mask", "seg"]  # no json
    assert sorted(os.listdir(os.path.join(root, "img"))) == ["0000.png", "0001.png", "0002.png"]
    nyu_test = _index(roots["nyu_v2"], "nyu_v2")["test"]
    for i, entry in enumerate(nyu_test):
        sample_files = [f"img/{i:04d}.png", f"seg/{i:04d}.png", f"normal_mask/{i:04d}.png", f"depth/{i:04d}.npy"]
        for sample_file, nyu_file in zip(sample_files, entry):
            a, b = os.path.join(root, sample_file), os.path.join(roots["nyu_v2"], nyu_file)
            if a.endswith(".npy"):
                assert filecmp.cmp(a, b, shallow=False)
            else:  # other PNG compression, same pixels
                assert np.array_equal(cv2.imread(a, cv2.IMREAD_UNCHANGED), cv2.imread(b, cv2.IMREAD_UNCHANGED))


def _tree_bytes(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path):
    kwargs = dict(num_train=2, num_test=1, num_val=1, height=32, width=40, progress=False)
    for layout in ("taskonomy", "cityscapes"):
        generate_dataset(layout, str(tmp_path / f"{layout}_a"), seed=7, **kwargs)
        generate_dataset(layout, str(tmp_path / f"{layout}_b"), seed=7, **kwargs)
        generate_dataset(layout, str(tmp_path / f"{layout}_c"), seed=8, **kwargs)
        a, b, c = (_tree_bytes(str(tmp_path / f"{layout}_{s}")) for s in "abc")
        assert a == b and len(a) > 6
        assert a.keys() == c.keys()
        differing = [name for name in a if a[name] != c[name]]
        assert len(differing) > len(a) // 2, layout


def test_cli_writes_a_dataset_and_prints_throughput(tmp_path):
    out = tmp_path / "nyu"
    result = subprocess.run([sys.executable, "tools/synthetic_data.py", "--layout", "nyu_v2", "--out", str(out),
                             "--num-train", "3", "--num-test", "1", "--height", "24", "--width", "32",
                             "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "images/s" in result.stdout
    index = json.loads((out / "nyu_v2_3task.json").read_text())
    assert len(index["train"]) == 3 and len(index["val"]) == 1 and len(index["test"]) == 1
    assert cv2.imread(str(out / index["train"][0][0])).shape == (24, 32, 3)


@pytest.mark.parametrize("args, message", [
    (["--layout", "nyuv2"], "invalid choice"),
    (["--layout", "nyu_v2", "--num-train", "1"], "num_train"),
])
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    result = subprocess.run([sys.executable, "tools/synthetic_data.py", "--out", str(tmp_path / "x"), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize("kwargs, message", [
    (dict(layout="imagenet"), "unknown layout 'imagenet'"),
    (dict(layout="nyu_v2", num_train=1), "num_train"),
    (dict(layout="nyu_v2", num_test=0), "num_test"),
    (dict(layout="nyu_v2", height=4), "height"),
    (dict(layout="nyu_v2", seed=-1), "seed"),
    (dict(layout="nyu_v2", num_val=-1), "num_val"),
])
def test_api_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(out_dir=str(tmp_path / "x"), progress=False, **kwargs)


# ---- geometric consistency of the labels (render API) ----

def _camera_points(depth, focal):
    """Back-project a z-depth map to camera-frame points (x right, y up, z towards the camera)."""
    h, w = depth.shape
    u = (np.arange(w) + 0.5 - w / 2) / focal
    v = (np.arange(h) + 0.5 - h / 2) / focal
    return np.stack([u[None, :] * depth, -v[:, None] * depth, -depth], axis=-1)


def _depth_normals(points):
    """Normals from central differences of back-projected points, oriented towards the camera. [H-2, W-2, 3]."""
    du = points[1:-1, 2:] - points[1:-1, :-2]
    dv = points[2:, 1:-1] - points[:-2, 1:-1]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(np.sum(n * points[1:-1, 1:-1], axis=-1, keepdims=True) > 0, -n, n)


def _interior(prim_id, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood lies on a single primitive."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    ids = prim_id.astype(np.float32)
    same = (cv2.dilate(ids, kernel) == ids) & (cv2.erode(ids, kernel) == ids)
    same[:radius], same[-radius:], same[:, :radius], same[:, -radius:] = False, False, False, False
    return same


def _angles_degrees(a, b):
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


@pytest.mark.parametrize("index", range(3))
def test_normals_agree_with_depth_geometry_on_planar_surfaces(index):
    h, w = 96, 128
    sample = make_sample("nyu_v2", item_rng(1, "train", index), h, w)
    hits, scene = sample.rendering.hits, sample.scene
    types = np.array([p.type_code for p in scene.primitives] + [-1])[hits.prim_id]
    # Faces: pixels of one primitive with one normal (a box has six); keep pixels inside a face.
    keys = np.concatenate([hits.prim_id.reshape(-1, 1), np.round(hits.normal_cam.reshape(-1, 3) * 1e4)], axis=1)
    faces = np.unique(keys, axis=0, return_inverse=True)[1].reshape(h, w)
    planar = _interior(faces) & np.isin(types, [PLANE, BOX])
    from_depth = _depth_normals(_camera_points(hits.depth, focal_length("nyu_v2", h, w)))
    errors = _angles_degrees(from_depth, hits.normal_cam[1:-1, 1:-1])[planar[1:-1, 1:-1]]
    assert planar.sum() > 0.3 * h * w and errors.max() < 0.5

    # The written files agree too: decoded 8-bit normals vs float32 depth, on floor pixels away from edges.
    arrays = sample.arrays
    floor = _interior(np.where(arrays["seg"] == FLOOR, 1, np.arange(h * w).reshape(h, w) + 2)) & \
        ~np.all(arrays["normal"] == 255, axis=-1)
    decoded = arrays["normal"].astype(np.float64) / 127.5 - 1.0
    decoded /= np.linalg.norm(decoded, axis=-1, keepdims=True)
    from_file_depth = _depth_normals(_camera_points(arrays["depth"].astype(np.float64), focal_length("nyu_v2", h, w)))
    file_errors = _angles_degrees(from_file_depth, decoded[1:-1, 1:-1])[floor[1:-1, 1:-1]]
    assert floor.sum() > 100 and np.median(file_errors) < 1.0 and file_errors.max() < 3.0


@pytest.mark.parametrize("layout", ["nyu_v2", "taskonomy", "cityscapes"])
def test_normals_face_the_camera_and_are_unit(layout):
    sample = make_sample(layout, item_rng(2, "test", 0), 60, 80)
    hits = sample.rendering.hits
    hit = hits.prim_id >= 0
    rays = sample.scene.camera.pixel_rays()
    assert np.all(np.sum(hits.normal_cam * rays, axis=-1)[hit] < 0)
    assert np.allclose(np.linalg.norm(hits.normal_cam[hit], axis=-1), 1.0)
    assert np.all(hits.normal_cam[~hit] == 0)


@pytest.mark.parametrize("index", range(3))
def test_nyu_classes_match_the_primitives_hit(index):
    h, w = 60, 80
    sample = make_sample("nyu_v2", item_rng(3, "train", index), h, w)
    scene, hits, seg = sample.scene, sample.rendering.hits, sample.arrays["seg"]
    kinds = np.array(scene.kinds())[hits.prim_id]
    expected = np.array([INDOOR_KINDS[kind][0] for kind in kinds.ravel()]).reshape(h, w)
    labelled = seg != 255
    assert labelled.mean() > 0.6
    assert np.array_equal(seg[labelled], expected[labelled])
    # Floor pixels: the ray hits the plane y = 0 (world), and the floor class is there exactly where it is hit.
    camera = scene.camera
    world = _camera_points(hits.depth, camera.focal) @ camera.rotation.T + camera.position
    on_floor = kinds == "floor"
    assert on_floor.any() and np.allclose(world[on_floor][:, 1], 0.0, atol=1e-9)
    assert np.all(world[~on_floor][:, 1] > -1e-9)  # nothing is seen below the floor
    assert np.array_equal(on_floor & labelled, (seg == FLOOR) & labelled)


def test_cityscapes_classes_match_the_primitives_hit():
    h, w = 64, 128
    sample = make_sample("cityscapes", item_rng(0, "train", 1), h, w)
    scene, hits, arrays = sample.scene, sample.rendering.hits, sample.arrays
    label19, disparity = arrays["label19"], arrays["depth"][..., 0]
    valid = label19 >= 0
    missed = hits.prim_id < 0
    assert missed.any() and np.all(label19[missed & valid] == CITYSCAPES_CLASSES.index("sky"))
    kinds = np.array(scene.kinds() + ["sky"])[hits.prim_id]
    road = (kinds == "road") & valid
    assert road.any() and np.all(label19[road] == CITYSCAPES_CLASSES.index("road"))
    camera = scene.camera
    depth = np.where(np.isfinite(hits.depth), hits.depth, 0.0)
    world = _camera_points(depth, camera.focal) @ camera.rotation.T + camera.position
    assert np.allclose(world[road][:, 1], 0.0, atol=1e-9)
    assert np.allclose(disparity[valid & ~missed], 1.0 / hits.depth[valid & ~missed], rtol=1e-6)


@pytest.mark.parametrize("index", range(3))
def test_occlusion_edges_lie_on_depth_discontinuities(index):
    h, w = 96, 96
    sample = make_sample("taskonomy", item_rng(4, "train", index), h, w)
    hits = sample.rendering.hits
    edges = occlusion_edges(sample.scene, hits)
    depth = hits.depth
    padded = np.pad(depth, 1, mode="edge")
    neighbours = [padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    ratio = np.max([n / depth for n in neighbours], axis=0)
    assert edges.any()
    assert np.all(ratio[edges] > 1.03)  # each edge pixel is the near side of a depth jump
    # The stored map: strong responses only near depth discontinuities (computed from the written 16-bit depth).
    stored_depth = sample.arrays["depth"].astype(np.float64)
    padded = np.pad(stored_depth, 1, mode="edge")
    jumps = np.max([np.abs(np.log(padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] / stored_depth))
                    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))], axis=0) > np.log(1.03)
    near_jump = cv2.dilate(jumps.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    strong = sample.arrays["edge"] > EDGE_RAW_MAX // 2
    assert strong.any() and np.all(near_jump[strong])


def _box_room(with_floating_box: bool, camera_height: float, pitch: float) -> Scene:
    prims = [Plane("floor", (0, 1, 0), 0.0), Plane("ceiling", (0, 1, 0), 2.5)]
    prims += [Plane("wall", n, o) for n, o in (((1, 0, 0), -2), ((1, 0, 0), 2), ((0, 0, 1), -3), ((0, 0, 1), 3))]
    # A counter from side wall to side wall against the back wall: it only touches other surfaces.
    prims.append(Box("counter", (0.0, 0.45, -2.7), (2.0, 0.45, 0.3)))
    if with_floating_box:  # hangs in the air: occluding all around
        prims.append(Box("box", (-0.6, 1.2, -1.0), (0.2, 0.2, 0.2), yaw=0.4))
    camera = Camera(60, 80, 60.0, np.array([0.0, camera_height, 2.5]), rotation_yaw_pitch_roll(0.1, pitch, 0.0))
    return Scene(prims, camera, lights=[])


@pytest.mark.parametrize("camera_height, pitch", [(1.4, -0.3), (2.0, -0.35)])
def test_contact_edges_are_not_occlusion_edges(camera_height, pitch):
    scene = _box_room(False, camera_height, pitch)
    hits = cast(scene)
    assert {0, 2, 3, 4, 6} <= set(np.unique(hits.prim_id))  # floor, three walls and the counter are in view
    assert not occlusion_edges(scene, hits).any()  # wall-floor corners, a counter seen almost edge-on
    scene = _box_room(True, camera_height, pitch)
    hits = cast(scene)
    edges = occlusion_edges(scene, hits)
    floating = hits.prim_id == 7
    assert edges.any() and np.all(floating[edges])  # edges only on the floating box's outline, on its near side


def test_keypoints_are_blobs_on_visible_corners():
    h, w = 96, 96
    sample = make_sample("taskonomy", item_rng(5, "train", 0), h, w)
    pixels = visible_keypoints(sample.scene, sample.rendering.hits)
    keypoint = sample.arrays["keypoint"]
    assert len(pixels) > 0
    assert np.all(keypoint[pixels[:, 0], pixels[:, 1]] >= 0.9 * KEYPOINT_RAW_MAX)
    assert keypoint.max() <= KEYPOINT_RAW_MAX and (keypoint == 0).mean() > 0.5


def test_committed_nyu_samples_folder():
    folder = os.path.join(ROOT, "nyu_v2_samples")
    ids = sorted(name[:-4] for name in os.listdir(os.path.join(folder, "img")))
    assert len(ids) == 4
    for sample_id in ids:
        img = cv2.imread(os.path.join(folder, "img", f"{sample_id}.png"), cv2.IMREAD_UNCHANGED)
        seg = cv2.imread(os.path.join(folder, "seg", f"{sample_id}.png"), cv2.IMREAD_UNCHANGED)
        normal = cv2.imread(os.path.join(folder, "normal_mask", f"{sample_id}.png"), cv2.IMREAD_UNCHANGED)
        depth = np.load(os.path.join(folder, "depth", f"{sample_id}.npy"))
        assert img.shape == (480, 640, 3) and seg.shape == (480, 640) and normal.shape == (480, 640, 3)
        assert depth.shape == (480, 640) and depth.dtype == np.float32
        assert set(np.unique(seg)) <= set(range(40)) | {255}
    readme = open(os.path.join(folder, "README.md")).read()
    assert "synthetic" in readme.lower() and "python tools/synthetic_data.py --layout nyu_v2_samples" in readme
