"""sensor_msgs/Image <-> numpy for the REP-118 encodings, padding, endianness, malformed input."""

from __future__ import annotations

import array
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from perception_nodes.image_conversion import (
    ImageConversionError,
    compressed_to_numpy,
    encoding_info,
    image_to_numpy,
    image_to_rgb,
    numpy_to_compressed,
    numpy_to_image,
)

PLAIN = [
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "8UC1",
    "8UC2",
    "8UC3",
    "8UC4",
    "16UC1",
    "16SC1",
    "32FC1",
    "32FC3",
    "64FC1",
    "32SC2",
    "rgb16",
    "bgra16",
]


def make_msg(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> Image:
    """Build an Image by hand, with ``pad`` bytes of row padding and a chosen byte order."""
    h, w = arr.shape[:2]
    a = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    m = Image()
    m.height, m.width, m.encoding, m.is_bigendian = h, w, encoding, int(big)
    m.step = rows.shape[1]
    m.data = array.array("B", rows.tobytes())
    return m


def random_array(rng: np.random.Generator, encoding: str, h: int, w: int) -> np.ndarray:
    info = encoding_info(encoding)
    shape = (h, w) if info.channels == 1 else (h, w, info.channels)
    if info.dtype.kind == "f":
        return rng.standard_normal(shape).astype(info.dtype)
    lim = np.iinfo(info.dtype)
    return rng.integers(lim.min, lim.max, size=shape, endpoint=True, dtype=info.dtype)


@settings(max_examples=150, deadline=None)
@given(
    encoding=st.sampled_from(PLAIN),
    h=st.integers(1, 17),
    w=st.integers(1, 23),
    pad=st.integers(0, 9),
    big=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_decode_matches_source_for_any_shape_padding_and_byte_order(encoding, h, w, pad, big, seed):
    info = encoding_info(encoding)
    pad -= pad % info.dtype.itemsize  # step must stay a multiple of the channel size
    arr = random_array(np.random.default_rng(seed), encoding, h, w)
    out = image_to_numpy(make_msg(arr, encoding, pad, big))
    assert out.shape == arr.shape
    assert out.dtype.newbyteorder("=") == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, arr)


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(PLAIN), h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_encode_decode_round_trip(encoding, h, w, seed):
    arr = random_array(np.random.default_rng(seed), encoding, h, w)
    msg = numpy_to_image(arr, encoding)
    assert msg.step == w * encoding_info(encoding).channels * arr.dtype.itemsize
    assert msg.is_bigendian == (sys.byteorder == "big" and arr.dtype.itemsize > 1)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_decode_is_zero_copy_view_of_message_data():
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = make_msg(arr, "rgb8", pad=3)
    out = image_to_numpy(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))
    msg.data[0] = 77  # writes through: the decoded array is a view, not a copy
    assert out[0, 0, 0] == 77


def test_encode_copies_the_pixels_once(monkeypatch):
    # Jazzy's generated `data` setter re-copies element by element (~0.9 ms per VGA frame)
    # unless the message checks fields; the encoder must hand rclpy its array unchanged.
    import array

    import perception_nodes.image_conversion as ic

    made = []
    real = ic._to_byte_array
    monkeypatch.setattr(ic, "_to_byte_array", lambda a: made.append(real(a)) or made[-1])
    arr = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    msg = ic.numpy_to_image(arr, "rgb8")
    assert isinstance(msg.data, array.array) and msg.data is made[0]
    arr[0, 0, 0] = 255  # the message owns its copy
    assert msg.data[0] == 0


def test_header_is_carried_by_encode():
    from std_msgs.msg import Header

    hdr = Header(frame_id="camera_optical_frame")
    hdr.stamp.sec, hdr.stamp.nanosec = 12, 345
    msg = numpy_to_image(np.zeros((2, 3, 3), np.uint8), "rgb8", hdr)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("camera_optical_frame", 12, 345)


def test_to_rgb_from_every_colour_encoding():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(make_msg(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(make_msg(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(make_msg(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((6, 8, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(make_msg(bgra, "bgra8")), rgb)
    mono = rgb[:, :, 0].copy()
    np.testing.assert_array_equal(image_to_rgb(make_msg(mono, "mono8")), np.repeat(mono[:, :, None], 3, 2))
    mono16 = mono.astype(np.uint16) * 257
    np.testing.assert_array_equal(image_to_rgb(make_msg(mono16, "mono16")), np.repeat(mono[:, :, None], 3, 2))


def test_yuv422_decodes_to_rgb():
    # A flat colour survives UYVY and YUYV encoding up to YUV rounding.
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:] = (200, 100, 50)
    # BT.601 video range, as cameras send it.
    r, g, b = 200, 100, 50
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    u = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    v = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    uyvy = np.tile(np.array([u, y, v, y], np.uint8), (4, 4)).reshape(4, 8, 2)
    yuyv = np.tile(np.array([y, u, y, v], np.uint8), (4, 4)).reshape(4, 8, 2)
    for enc, buf in (("yuv422", uyvy), ("uyvy", uyvy), ("yuv422_yuy2", yuyv), ("yuyv", yuyv)):
        out = image_to_rgb(make_msg(buf, enc))
        assert out.shape == (4, 8, 3)
        assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 3, enc


@pytest.mark.parametrize(
    "pattern,offsets",
    [
        ("bayer_rggb8", {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}),
        ("bayer_bggr8", {(0, 0): 2, (0, 1): 1, (1, 0): 1, (1, 1): 0}),
        ("bayer_gbrg8", {(0, 0): 1, (0, 1): 2, (1, 0): 0, (1, 1): 1}),
        ("bayer_grbg8", {(0, 0): 1, (0, 1): 0, (1, 0): 2, (1, 1): 1}),
    ],
)
def test_bayer_patterns_demosaic_to_the_right_colour(pattern, offsets):
    colour = np.array([220, 120, 30])
    raw = np.zeros((8, 8), np.uint8)
    for (dy, dx), ch in offsets.items():
        raw[dy::2, dx::2] = colour[ch]
    out = image_to_rgb(make_msg(raw, pattern))
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(0), colour, atol=2)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda m: setattr(m, "encoding", "bayer_gbrg16"), "encoding"),
        (lambda m: setattr(m, "step", 5), "step"),
        (lambda m: setattr(m, "data", m.data[:-10]), "data"),
        (lambda m: setattr(m, "height", 0), "zero size"),
        (lambda m: setattr(m, "width", 0), "zero size"),
    ],
)
def test_malformed_messages_raise_one_clear_error(mutate, field):
    msg = make_msg(np.zeros((4, 5, 3), np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=field):
        image_to_numpy(msg)


def test_unknown_encoding_lists_supported():
    msg = make_msg(np.zeros((2, 2, 3), np.uint8), "rgb8")
    msg.encoding = "bayer_gbrg16"
    with pytest.raises(ImageConversionError, match="supported: rgb8, bgr8"):
        image_to_numpy(msg)


def test_step_not_multiple_of_channel_size():
    msg = make_msg(np.zeros((2, 3), np.uint16), "mono16", pad=0)
    msg.step = 7
    msg.data = array.array("B", bytes(7 * 2))
    with pytest.raises(ImageConversionError, match="multiple"):
        image_to_numpy(msg)


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ImageConversionError, match="does not fit encoding 'rgb8'"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype float64"):
        numpy_to_image(np.zeros((4, 4, 3)), "rgb8")


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (255, 0, 0)
    rgb[:, 24:] = (0, 0, 255)
    msg = numpy_to_compressed(rgb, "rgb8", fmt)
    out = compressed_to_numpy(msg, "rgb8")
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < (4 if fmt == "jpeg" else 0.01)
    assert compressed_to_numpy(msg, "bgr8")[5, 5].tolist() == out[5, 5, ::-1].tolist()


def test_compressed_garbage_and_unknown_format():
    msg = CompressedImage()
    msg.format = "jpeg"
    msg.data = array.array("B", b"not a jpeg at all")
    with pytest.raises(ImageConversionError, match="not a valid jpeg"):
        compressed_to_numpy(msg)
    msg.format = "tiff"
    with pytest.raises(ImageConversionError, match="'format'='tiff'"):
        compressed_to_numpy(msg)


def test_rgb_models_refuse_raw_encodings_unless_told_to_take_them_as_grey():
    depth16 = np.full((12, 16), 1500, np.uint16)  # a 16UC1 depth image in millimetres
    with pytest.raises(ImageConversionError, match="'16UC1' is a raw OpenCV type.*accept_raw_encodings"):
        image_to_rgb(make_msg(depth16, "16UC1"))
    grey = image_to_rgb(make_msg(depth16, "16UC1"), raw_as_colour=True)
    assert grey.shape == (12, 16, 3) and grey.dtype == np.uint8 and (grey == 1500 * 255 // 65535).all()
    rgb = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(make_msg(rgb, "8UC3"), raw_as_colour=True), rgb)
    for enc, arr in (("32FC1", np.ones((12, 16), np.float32)), ("16SC1", np.ones((12, 16), np.int16))):
        with pytest.raises(ImageConversionError, match="raw OpenCV type"):
            image_to_rgb(make_msg(arr, enc), raw_as_colour=True)  # never colour, even when allowed


def test_odd_width_yuv422_and_degenerate_sizes_get_their_own_error():
    odd = np.zeros((4, 7, 2), np.uint8)  # OpenCV raised from inside cvtColor
    with pytest.raises(ImageConversionError, match="YUV 4:2:2 needs an even width"):
        image_to_rgb(make_msg(odd, "yuv422"))
    with pytest.raises(ImageConversionError, match="1x1 pixels is too small"):
        image_to_rgb(make_msg(np.zeros((1, 1, 3), np.uint8), "rgb8"))
    with pytest.raises(ImageConversionError, match="640x1 pixels is too small"):
        image_to_rgb(make_msg(np.zeros((1, 640, 3), np.uint8), "rgb8"))


def test_list_images_takes_every_image_suffix_in_any_case_sorted_and_nothing_else(tmp_path):
    from perception_nodes.image_conversion import list_images

    for name in ("b.PNG", "a.jpg", "c.Tiff", "notes.txt", "d.png.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not one
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.Tiff"]
    assert list_images(str(tmp_path / "sub.png")) == []
