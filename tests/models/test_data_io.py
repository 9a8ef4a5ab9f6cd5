"""Writers (training set on disk, rosbag2 MCAP) and readers of the real formats.

The synthetic set is written once per module; every file is read back with the project's own
readers (and pycocotools for COCO) and compared with the in-memory ground truth. Readers of real
data sets are also run on ../shared/data when it is present (skipped with a reason otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from perception_models.data.readers import DataFormatError
from perception_models.data.readers.coco import load_coco
from perception_models.data.readers.depth import read_kitti_depth, read_nyu_depth, read_tum_depth
from perception_models.data.readers.euroc import load_euroc
from perception_models.data.readers.hpatches import load_hpatches_sequence
from perception_models.data.readers.labels import CAMVID_LUT, CITYSCAPES_LUT, IGNORE, read_label_png
from perception_models.data.readers.rosbag import read_images
from perception_models.data.readers.tum import associate, frames_from_image_folder, load_tum_rgbd, read_tum_trajectory
from perception_models.data.readers.voc import load_voc, load_voc_xml
from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.synth.correspondence import VISIBLE
from perception_models.data.writers import decode_flow_kitti, write_sequence

ROOT = Path(__file__).resolve().parents[2]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
W, H, N = 160, 120, 5


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "driving_0007"
    seq = SyntheticSequence(SynthConfig(preset="driving", seed=7, frames=N, width=W, height=H))
    summary = write_sequence(seq, out, bag=True, workers=1, progress=False)
    return seq, list(seq.frames()), out, summary


def test_manifest_and_layout(written):
    seq, frames, out, summary = written
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["seed"] == 7 and m["frames"] == N and m["generator_version"]
    assert m["frames_convention"]["pose"].startswith("T_world_camera_optical")
    for d in ("rgb", "depth", "labels", "instances", "dynamic", "flow", "flow_status"):
        assert len(list((out / d).glob("*.png"))) == (N - 1 if d.startswith("flow") else N), d
    assert summary["bag"] == str(out / "bag")


def test_images_labels_and_depth_read_back_exactly(written):
    seq, frames, out, _ = written
    for f in frames:
        rgb = cv2.cvtColor(cv2.imread(str(out / "rgb" / f"{f.index:06d}.png")), cv2.COLOR_BGR2RGB)
        assert (rgb == f.rgb).all()
        assert (read_label_png(out / "labels" / f"{f.index:06d}.png") == f.semantic).all()
        assert (cv2.imread(str(out / "instances" / f"{f.index:06d}.png"), cv2.IMREAD_UNCHANGED) == f.instance).all()
        depth = read_nyu_depth(out / "depth" / f"{f.index:06d}.png")
        near = np.isfinite(f.depth) & (f.depth < 65.0)
        assert np.nanmax(np.abs(depth[near] - f.depth[near])) <= 0.0005 + 1e-5  # rounding to mm, float32
        assert np.isnan(depth[~np.isfinite(f.depth)]).all()


def test_coco_annotations_match_the_masks(written):
    from pycocotools.coco import COCO

    seq, frames, out, _ = written
    samples, names = load_coco(out / "annotations_coco.json")
    assert names == ["person", "car", "cone", "box", "barrel", "chair"]
    coco = COCO(str(out / "annotations_coco.json"))
    total = 0
    for f, s in zip(frames, samples):
        kept = [b for b in f.boxes if b.pixels >= 16]
        assert len(s.boxes) == len(kept)
        for b, box in zip(kept, s.boxes):
            assert tuple(box) == (b.x0, b.y0, b.x1 + 1, b.y1 + 1)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[f.index])):
            assert (coco.annToMask(ann) == (f.instance == ann["instance_id"])).all()
            total += 1
    assert total > 0


def test_flow_png_and_trajectory_and_camera_info(written):
    from perception_nodes.camera_info import load_camera_info

    seq, frames, out, _ = written
    a, b = frames[1], frames[2]
    flow, status = seq.correspondence(a, b)
    png = cv2.cvtColor(cv2.imread(str(out / "flow" / "000001.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    dec, valid = decode_flow_kitti(png)
    assert (valid == (status == VISIBLE)).all()
    assert np.abs(dec[valid] - flow[valid]).max() <= 1 / 128 + 1e-4  # KITTI flow quantum 1/64 px, rounded
    assert (cv2.imread(str(out / "flow_status" / "000001.png"), cv2.IMREAD_UNCHANGED) == status).all()
    times, poses = read_tum_trajectory(out / "trajectory_tum.txt")
    assert len(times) == N and np.allclose(np.diff(times), 0.1)
    for f, T in zip(frames, poses):
        np.testing.assert_allclose(T, f.T_world_cam, atol=1e-6)
    info = load_camera_info(out / "camera_info.yaml")
    np.testing.assert_allclose(np.array(info.k).reshape(3, 3), seq.K)
    assert (info.width, info.height) == (W, H)


def test_preview_picture(written, tmp_path):
    seq, frames, out, _ = written
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception_models.cli",
            "data",
            "preview",
            str(out),
            "--frame",
            "1",
            "--out",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img.shape == (2 * H, 2 * W, 3)
    assert img[H:, W:].any(), "flow panel is empty"
    missing = subprocess.run(
        [sys.executable, "-m", "perception_models.cli", "data", "preview", str(out), "--frame", "99"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "000099.png does not exist" in missing.stderr


def test_bag_has_every_topic_and_reads_back(written):
    from perception_nodes.bag_io import bag_info, read_messages, typestore

    seq, frames, out, _ = written
    topics = bag_info(out / "bag").topics
    for t in (
        "/camera/image_raw",
        "/camera/camera_info",
        "/ground_truth/depth",
        "/ground_truth/labels",
        "/ground_truth/detections",
        "/ground_truth/odometry",
        "/tf",
    ):
        assert topics[t][1] == N, t
    assert topics["/tf_static"][1] == 1
    assert topics["/ground_truth/detections"][0] == "vision_msgs/msg/Detection2DArray"
    assert topics["/ground_truth/label_info"] == ("vision_msgs/msg/LabelInfo", 1)
    imgs = list(read_images(out / "bag"))
    assert [i.rgb.tobytes() for i in imgs] == [f.rgb.tobytes() for f in frames]
    np.testing.assert_allclose(imgs[0].K, seq.K)
    assert imgs[0].frame_id == "camera_optical_frame"
    depth = list(read_images(out / "bag", "/ground_truth/depth", camera_info_topic="/camera/camera_info"))
    assert depth[2].encoding == "32FC1" and np.array_equal(depth[2].rgb, frames[2].depth)
    store = typestore()
    dets = [store.deserialize_cdr(raw, t) for _, t, _, raw in read_messages(out / "bag", ["/ground_truth/detections"])]
    from perception_nodes.detection_conversion import label_map, read_detections

    ((_t, mt, _s, raw),) = read_messages(out / "bag", ["/ground_truth/label_info"])
    names = label_map(store.deserialize_cdr(raw, mt))
    f = frames[3]
    boxes = zip(dets[3].detections, read_detections(dets[3], names))
    got = sorted((d.id, b.x0 + b.x1, b.x1 - b.x0, b.class_name) for d, b in boxes)
    want = sorted((str(b.instance), float(b.x0 + b.x1 + 1), float(b.x1 - b.x0 + 1), b.class_name) for b in f.boxes)
    assert got == want
    odo = [store.deserialize_cdr(raw, t) for _, t, _, raw in read_messages(out / "bag", ["/ground_truth/odometry"])]
    p = odo[4].pose.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], frames[4].T_world_body[:3, 3])
    assert odo[4].header.frame_id == "odom" and odo[4].child_frame_id == "camera_link"


def test_foundation_player_replays_the_synthetic_bag(written, demo_model, tmp_path):
    from perception_nodes.tools.replay import replay

    _, _, out, _ = written
    summary = replay(
        out / "bag",
        "generic_replay",
        tmp_path / "replay",
        "lockstep",
        overrides={"generic": {"model_path": str(demo_model)}},
        timeout=120,
    )
    assert summary["player_exit_code"] == 0
    res = summary["results"]
    assert res["frames"] == N and res["/generic/result"]["frames_with_one_result"] == N


def test_cli_synth_is_deterministic_and_refuses_to_overwrite(tmp_path):
    def run(out):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "perception_models.cli",
                "data",
                "synth",
                "--preset",
                "indoor",
                "--frames",
                "2",
                "--width",
                "96",
                "--height",
                "72",
                "--seed",
                "3",
                "--workers",
                "1",
                "--no-flow",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a.returncode == 0 and b.returncode == 0, a.stderr
    for name in ("rgb/000001.png", "depth/000001.png", "labels/000000.png", "annotations_coco.json"):
        assert (tmp_path / "a/indoor_0003" / name).read_bytes() == (tmp_path / "b/indoor_0003" / name).read_bytes()
    again = run(tmp_path / "a")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


# ------------------------------------------------------------------ readers on small fixtures


def test_reproduction_sets_are_rendered_once_and_again_when_changed(tmp_path, monkeypatch):
    """Every export measures its card's reproduction metric on the same rendered sets: rendered
    once into a cache keyed by the renderer, each file checked on use, rendered again when one was
    altered, and the same bytes as a fresh render into a folder of one's own."""
    import perception_models.evaluate as ev

    monkeypatch.setattr(ev, "REPRODUCTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        ev, "REPRODUCTION", ({"preset": "driving", "seed": 900, "frames": 2, "width": 64, "height": 48},)
    )
    first = ev.reproduction_sets()
    assert [f.name for f in first] == ["driving_0900"] and first[0].parent.name == ev._renderer_key()
    png = sorted((first[0] / "rgb").glob("*.png"))[0]
    stamp = png.stat().st_mtime_ns
    assert ev.reproduction_sets() == first and png.stat().st_mtime_ns == stamp  # reused, not rendered
    fresh = ev.reproduction_sets(tmp_path / "own")[0]
    assert ev._digest(fresh) == ev._digest(first[0])
    png.write_bytes(b"not the rendered frame")
    again = ev.reproduction_sets()[0]
    assert ev._digest(again) == ev._digest(fresh)  # the altered file was noticed and the set rendered again
    (again.parent / "files.sha256.json").unlink()  # no record of what was written: not trusted either
    png.write_bytes(b"not the rendered frame")
    assert ev._digest(ev.reproduction_sets()[0]) == ev._digest(fresh)
    monkeypatch.setattr(
        ev, "REPRODUCTION", ({"preset": "driving", "seed": 901, "frames": 2, "width": 64, "height": 48},)
    )
    assert ev._renderer_key() != first[0].parent.name  # another spec, another key: the old copy is not used


def test_voc_xml_and_malformed(tmp_path):
    (tmp_path / "Annotations").mkdir()
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(
        "<annotation><filename>img1.jpg</filename><size><width>50</width><height>40</height></size>"
        "<object><name>car</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>10</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )
    s = load_voc_xml(xml)
    assert s.labels == ["car"] and s.difficult.tolist() == [True]
    assert s.boxes.tolist() == [[0, 1, 10, 20]] and s.image_path == tmp_path / "JPEGImages" / "img1.jpg"
    (tmp_path / "Annotations" / "bad.xml").write_text("<annotation><size>")
    with pytest.raises(DataFormatError, match="bad.xml"):
        load_voc(tmp_path / "Annotations")


def test_label_pngs_with_ignore(tmp_path):
    idx = np.array([[0, 3, 11], [7, 26, 200]], np.uint8)
    cv2.imwrite(str(tmp_path / "l.png"), idx)
    assert read_label_png(tmp_path / "l.png", CAMVID_LUT).tolist() == [[0, 3, IGNORE], [7, IGNORE, IGNORE]]
    assert read_label_png(tmp_path / "l.png", CITYSCAPES_LUT).tolist() == [[IGNORE, IGNORE, 2], [0, 13, IGNORE]]
    palette = np.array([[128, 128, 128], [128, 0, 0]])
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (128, 0, 0)
    colour[1, 1] = (1, 2, 3)
    colour[0, 1] = colour[1, 0] = (128, 128, 128)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
    assert read_label_png(tmp_path / "c.png", palette=palette).tolist() == [[1, 0], [0, IGNORE]]
    with pytest.raises(DataFormatError, match="palette"):
        read_label_png(tmp_path / "c.png")


def test_depth_pngs_of_each_convention(tmp_path):
    raw = np.array([[0, 256, 5000], [1000, 65535, 2560]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    k, n, t = (
        read_kitti_depth(tmp_path / "d.png"),
        read_nyu_depth(tmp_path / "d.png"),
        read_tum_depth(tmp_path / "d.png"),
    )
    assert np.isnan(k[0, 0]) and np.isnan(n[0, 0]) and np.isnan(t[0, 0])
    assert k[0, 1] == 1.0 and k[1, 2] == 10.0 and n[0, 2] == 5.0 and t[0, 2] == 1.0 and n[1, 0] == 1.0
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataFormatError, match="16-bit"):
        read_kitti_depth(tmp_path / "rgb.png")


def test_tum_rgbd_association(tmp_path):
    (tmp_path / "rgb.txt").write_text("# color images\n1.000 rgb/1.000.png\n1.033 rgb/1.033.png\n1.066 rgb/1.066.png\n")
    (tmp_path / "depth.txt").write_text("1.010 depth/1.010.png\n1.070 depth/1.070.png\n")
    (tmp_path / "groundtruth.txt").write_text(
        "# timestamp tx ty tz qx qy qz qw\n0.999 1 2 3 0 0 0 1\n1.065 4 5 6 0 0 0.7071068 0.7071068\n"
    )
    frames = load_tum_rgbd(tmp_path)
    assert [f.depth_path.name if f.depth_path else None for f in frames] == ["1.010.png", None, "1.070.png"]
    assert frames[0].pose[:3, 3].tolist() == [1, 2, 3] and frames[1].pose is None
    np.testing.assert_allclose(frames[2].pose[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)
    assert associate(np.array([1.0, 2.0]), np.array([1.5])) == []
    (tmp_path / "groundtruth.txt").write_text("1.0 1 2\n")
    with pytest.raises(DataFormatError, match="groundtruth.txt:1: expected 8 columns"):
        load_tum_rgbd(tmp_path)


def test_euroc_layout(tmp_path):
    cam = tmp_path / "mav0" / "cam0"
    (cam / "data").mkdir(parents=True)
    (cam / "data.csv").write_text(
        "#timestamp [ns],filename\n1403636579763555584,1403636579763555584.png\n"
        "1403636579813555456,1403636579813555456.png\n"
    )
    (cam / "sensor.yaml").write_text(
        yaml.safe_dump(
            {
                "intrinsics": [458.654, 457.296, 367.215, 248.375],
                "distortion_coefficients": [-0.28, 0.07, 0.0002, 0.00002],
                "resolution": [752, 480],
                "T_BS": {"rows": 4, "cols": 4, "data": np.eye(4).ravel().tolist()},
            }
        )
    )
    gt = tmp_path / "mav0" / "state_groundtruth_estimate0"
    gt.mkdir()
    (gt / "data.csv").write_text(
        "#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z []\n"
        "1403636579763555584,4.6,-1.8,0.8,1,0,0,0\n"
    )
    frames, camera = load_euroc(tmp_path / "mav0")
    assert len(frames) == 2 and frames[0].T_world_body[:3, 3].tolist() == [4.6, -1.8, 0.8]
    assert frames[1].T_world_body is None  # 50 ms from the only ground-truth sample
    assert camera.K[0, 0] == 458.654 and camera.resolution == (752, 480)


def test_hpatches_layout(tmp_path):
    seq = tmp_path / "v_test"
    seq.mkdir()
    for k in range(1, 4):
        cv2.imwrite(str(seq / f"{k}.ppm"), np.zeros((8, 8, 3), np.uint8))
    Hm = np.array([[1.0, 0.1, 5.0], [0.0, 1.2, -3.0], [0.0, 0.001, 1.0]])
    np.savetxt(seq / "H_1_2", Hm)
    np.savetxt(seq / "H_1_3", np.eye(3))
    pairs = load_hpatches_sequence(seq)
    assert [p.name for p in pairs] == ["v_test/1-2", "v_test/1-3"]
    pts = np.array([[10.0, 20.0]])
    expect = Hm @ np.array([10.0, 20.0, 1.0])
    np.testing.assert_allclose(pairs[0].warp_points(pts)[0], expect[:2] / expect[2])


def test_bag_from_images_folder_and_video(tmp_path):
    from perception_models.data.bag_from_images import bag_from_images

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    srcs = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    for i, s in enumerate(srcs):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(s, cv2.COLOR_RGB2BGR))
    info = tmp_path / "cam.yaml"
    info.write_text(
        yaml.safe_dump(
            {
                "image_width": 64,
                "image_height": 48,
                "camera_matrix": {"rows": 3, "cols": 3, "data": [50.0, 0, 32, 0, 50.0, 24, 0, 0, 1]},
            }
        )
    )
    assert bag_from_images(folder, tmp_path / "bag", fps=5, camera_info=info) == 4
    got = list(read_images(tmp_path / "bag"))
    assert [g.rgb.tobytes() for g in got] == [s.tobytes() for s in srcs]
    assert got[1].stamp_ns - got[0].stamp_ns == 200_000_000 and got[0].K[0, 0] == 50.0
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for s in srcs:
        vw.write(cv2.cvtColor(s, cv2.COLOR_RGB2BGR))
    vw.release()
    assert bag_from_images(video, tmp_path / "vbag", max_frames=3) == 3
    with pytest.raises(FileExistsError):
        bag_from_images(folder, tmp_path / "bag")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no"):
        bag_from_images(tmp_path / "empty", tmp_path / "ebag")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception_models.cli",
            "data",
            "bag-from-images",
            "--images",
            str(folder),
            "--out",
            str(tmp_path / "clibag"),
            "--fps",
            "30",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "4 frames" in proc.stdout


# ------------------------------------------------------------------ the real data sets, when present


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        pytest.skip(f"{path} not present (real data lives in ../shared/data on dev machines only)")
    return path


def test_real_voc_and_coco_agree():
    root = _shared("voc_det100")
    voc = {s.image_id: s for s in load_voc(root / "gts" / "pascalvoc_format", root / "images")}
    coco, names = load_coco(root / "gts" / "coco_format_v2" / "instances_v2.json", root / "images")
    assert len(voc) == 100 and sum(len(s.boxes) for s in voc.values()) == 273
    assert len(names) == 20 and sum(len(s.boxes) for s in coco) == 273
    for s in coco:
        v = voc[Path(s.image_path).stem]
        assert sorted(s.labels) == sorted(v.labels)
        assert (s.width, s.height) == (v.width, v.height) and s.image_path.is_file()
        # the two files may round VOC's 1-based corners differently: within 1 px
        assert np.abs(np.sort(s.boxes, axis=0) - np.sort(v.boxes, axis=0)).max() <= 1.0


def test_real_camvid_labels():
    root = _shared("camvid")
    files = sorted((root / "valannot").glob("*.png"))[:5]
    for f in files:
        lab = read_label_png(f, CAMVID_LUT)
        assert lab.shape == (360, 480) and set(np.unique(lab)) <= set(range(11)) | {IGNORE}


def test_real_tum_frames():
    root = _shared("tum_fr3_office")
    frames = frames_from_image_folder(root / "rgb")
    assert len(frames) == 17 and all(b.time > a.time for a, b in zip(frames, frames[1:]))
