"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

REP-118 encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1-4, 16UC1, 32FC1 (and the
other nUCk/nSCk/32FCk/64FCk spellings), yuv422 (UYVY), yuv422_yuy2/yuyv (YUYV), and the 8-bit
Bayer patterns. Decoding returns a zero-copy ``np.frombuffer`` view of ``msg.data`` whenever the
byte order is native (rows padded by ``step`` become a strided view, still no copy).

Every malformed message raises :class:`ImageConversionError`, which names the field at fault
and what would fix it; the nodes turn it into a throttled log + diagnostic and keep running.

This module touches ``sensor_msgs`` only to build messages in :func:`numpy_to_image`;
decoding works on anything with the Image fields (duck-typed), so pipelines can be tested
without ROS.
"""

from __future__ import annotations

import array
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "ImageConversionError",
    "SUPPORTED_ENCODINGS",
    "encoding_info",
    "image_to_numpy",
    "numpy_to_image",
    "image_to_rgb",
    "compressed_to_numpy",
    "numpy_to_compressed",
]


#: file suffixes read as images (cv2.imread) by every tool that takes a folder of images: the
#: camera source, INT8 calibration, bag-from-images, the matcher's photo sets
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff"})


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The :data:`IMAGE_SUFFIXES` files directly in ``folder`` (any case of the suffix), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageConversionError(ValueError):
    """A message that cannot be converted; the text names the field and the fix."""


@dataclass(frozen=True)
class EncodingInfo:
    dtype: np.dtype
    channels: int
    # For packed YUV 4:2:2 the buffer holds 2 bytes per pixel, decoded as (H, W, 2) uint8.
    kind: str = "plain"  # plain | yuv422 | bayer


_NAMED: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(np.dtype(np.uint8), 3),
    "bgr8": EncodingInfo(np.dtype(np.uint8), 3),
    "rgba8": EncodingInfo(np.dtype(np.uint8), 4),
    "bgra8": EncodingInfo(np.dtype(np.uint8), 4),
    "rgb16": EncodingInfo(np.dtype(np.uint16), 3),
    "bgr16": EncodingInfo(np.dtype(np.uint16), 3),
    "rgba16": EncodingInfo(np.dtype(np.uint16), 4),
    "bgra16": EncodingInfo(np.dtype(np.uint16), 4),
    "mono8": EncodingInfo(np.dtype(np.uint8), 1),
    "mono16": EncodingInfo(np.dtype(np.uint16), 1),
    # UYVY (ROS "yuv422") and YUYV ("yuv422_yuy2", also spelled "yuyv").
    "yuv422": EncodingInfo(np.dtype(np.uint8), 2, "yuv422"),
    "uyvy": EncodingInfo(np.dtype(np.uint8), 2, "yuv422"),
    "yuv422_yuy2": EncodingInfo(np.dtype(np.uint8), 2, "yuv422"),
    "yuyv": EncodingInfo(np.dtype(np.uint8), 2, "yuv422"),
    "bayer_rggb8": EncodingInfo(np.dtype(np.uint8), 1, "bayer"),
    "bayer_bggr8": EncodingInfo(np.dtype(np.uint8), 1, "bayer"),
    "bayer_gbrg8": EncodingInfo(np.dtype(np.uint8), 1, "bayer"),
    "bayer_grbg8": EncodingInfo(np.dtype(np.uint8), 1, "bayer"),
}

_CV_TYPE = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$")
_CV_DTYPES = {
    "8U": np.uint8,
    "8S": np.int8,
    "16U": np.uint16,
    "16S": np.int16,
    "32S": np.int32,
    "32F": np.float32,
    "64F": np.float64,
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_NAMED) + tuple(f"{d}C{c}" for d in _CV_DTYPES for c in range(1, 5))


def encoding_info(encoding: str) -> EncodingInfo:
    """Return dtype/channels of a REP-118 encoding or raise ImageConversionError."""
    info = _NAMED.get(encoding)
    if info is not None:
        return info
    m = _CV_TYPE.match(encoding)
    if m:
        return EncodingInfo(np.dtype(_CV_DTYPES[m.group(1)]), int(m.group(2)))
    raise ImageConversionError(
        f"Image encoding '{encoding}' is not supported; supported: {', '.join(SUPPORTED_ENCODINGS)}"
    )


def _buffer(data: Any) -> memoryview:
    """A byte view of ``msg.data`` (array.array, bytes, bytearray, list or numpy array)."""
    if isinstance(data, (bytes, bytearray, memoryview, array.array, np.ndarray)):
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data).view(np.uint8).reshape(-1).data
        return memoryview(data).cast("B")
    # Lists (e.g. messages built by hand): one copy.
    try:
        return memoryview(bytes(data))
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(
            f"Image field 'data' of type {type(data).__name__} is not a byte sequence: {exc}"
        ) from None


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/Image into an (H, W) or (H, W, C) array.

    Zero-copy (a view of ``msg.data``) when the byte order is native; rows padded by ``step``
    give a strided view. YUV 4:2:2 decodes to (H, W, 2) uint8 as stored; Bayer to (H, W) uint8:
    use :func:`image_to_rgb` for colour. Raises ImageConversionError on malformed input.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"Image has zero size (height={height}, width={width}); both must be > 0")
    info = encoding_info(encoding)
    if info.kind == "yuv422" and width % 2:
        raise ImageConversionError(
            f"Image of width {width} in '{encoding}': YUV 4:2:2 needs an even width (two pixels share "
            "one U/V pair); the camera driver's format does not match the message"
        )
    itemsize = info.dtype.itemsize
    row_bytes = width * info.channels * itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"Image field 'step'={step} is smaller than width*channels*bytes_per_channel="
            f"{width}*{info.channels}*{itemsize}={row_bytes} for encoding '{encoding}'; "
            f"set step to at least {row_bytes}"
        )
    if step % itemsize:
        raise ImageConversionError(
            f"Image field 'step'={step} is not a multiple of the {itemsize}-byte channel size of "
            f"'{encoding}'; rows must start on a channel boundary"
        )
    buf = _buffer(msg.data)
    # The last row need not carry its padding.
    needed = step * (height - 1) + row_bytes
    if len(buf) < needed:
        raise ImageConversionError(
            f"Image field 'data' has {len(buf)} bytes; {height} rows of step {step} for "
            f"{width}x{height} '{encoding}' need at least {needed}"
        )
    big = bool(msg.is_bigendian)
    dtype = info.dtype.newbyteorder(">" if big else "<") if itemsize > 1 else info.dtype
    # A strided view straight onto the message's buffer: no copy, padding skipped by strides.
    arr = np.ndarray(
        shape=(height, width, info.channels),
        dtype=dtype,
        buffer=buf,
        strides=(step, info.channels * itemsize, itemsize),
    )
    if itemsize > 1 and big != (sys.byteorder == "big"):
        arr = arr.astype(info.dtype.newbyteorder("="))  # one copy, to native byte order
    if info.channels == 1:  # mono, 16UC1, 32FC1 and Bayer mosaics come back as (H, W)
        arr = arr[:, :, 0]
    return arr


#: the smallest side an image must have to be a frame (a 1x1 frame crashed the odometry's resize)
MIN_MODEL_SIDE = 2


def image_to_rgb(msg: Any, raw_as_colour: bool = False) -> np.ndarray:
    """Decode any supported colour or grey encoding to an (H, W, 3) uint8 RGB array.

    mono is replicated, bgr/bgra reordered, alpha dropped, YUV 4:2:2 and Bayer demosaiced,
    16-bit scaled by 1/257. This is what the RGB models consume. Raw OpenCV-type encodings
    (16UC1, 32FC1, 8UC3 ...) carry depth or other data, not colour, and are refused unless
    ``raw_as_colour`` (the nodes' ``accept_raw_encodings``): then 8U/16U with 1, 3 or 4 channels
    are taken as grey, RGB or RGBA. Images with a side under MIN_MODEL_SIDE are refused.
    """
    import cv2  # local: only pipelines that need colour pay the import

    if hasattr(msg, "format") and not hasattr(msg, "encoding"):  # sensor_msgs/CompressedImage
        return compressed_to_numpy(msg, "rgb8")
    enc = str(msg.encoding)
    h, w = int(msg.height), int(msg.width)
    if 0 < min(h, w) < MIN_MODEL_SIDE:
        raise ImageConversionError(
            f"Image of {w}x{h} pixels is too small for a model input (each side at least {MIN_MODEL_SIDE})"
        )
    raw = _CV_TYPE.match(enc)
    if raw and not (raw_as_colour and raw.group(1) in ("8U", "16U") and raw.group(2) in ("1", "3", "4")):
        why = (
            "is a raw OpenCV type (depth, disparity or other data), not a colour image; a camera "
            "publishes rgb8, bgr8, mono8, yuv422 or bayer_*8"
        )
        if raw.group(1) in ("8U", "16U") and raw.group(2) in ("1", "3", "4"):
            why += "; set the node's parameter accept_raw_encodings:=true to take it as grey/RGB(A)"
        raise ImageConversionError(f"Image encoding '{enc}' {why}")
    arr = image_to_numpy(msg)
    info = encoding_info(enc)
    if info.kind == "yuv422":
        code = cv2.COLOR_YUV2RGB_UYVY if enc in ("yuv422", "uyvy") else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(np.ascontiguousarray(arr), code)
    if info.kind == "bayer":
        # OpenCV names Bayer patterns by the 2x2 block starting at the second row/column.
        codes = {
            "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
            "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
            "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
            "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
        }
        return cv2.cvtColor(np.ascontiguousarray(arr), codes[enc])
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageConversionError(
            f"Image encoding '{enc}' holds {arr.dtype} values, not colour; an RGB model needs "
            "rgb8, bgr8, rgba8, bgra8, mono8/16, yuv422 or bayer_*8"
        )
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 2:
        raise ImageConversionError(f"Image encoding '{enc}' has 2 channels; cannot make RGB")
    return arr[:, :, :3] if arr.shape[2] == 4 else arr


def _to_byte_array(arr: np.ndarray) -> array.array:
    # array.frombytes(memoryview) is one memcpy (assigning a numpy array to msg.data instead
    # runs rclpy's per-element checks: ~70 ms on a VGA image).
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).data.cast("B"))
    return out


def new_message(cls: Any) -> Any:
    """A message whose ``data`` setter keeps an ``array.array('B')`` as is.

    Jazzy's generated setters copy the value element by element (``array.array('B', value)``,
    ~0.9 ms for VGA) unless the message checks its fields, in which case an ``array('B')`` is
    stored without a copy. Older distros have no ``check_fields`` argument (and store the array
    as is under ``__debug__``).
    """
    try:
        return cls(check_fields=True)
    except (AssertionError, TypeError):
        return cls()


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Encode an array as a sensor_msgs/Image (one copy of the pixels).

    ``header`` (stamp + frame_id) is copied from the input by the nodes, so outputs carry the
    input's stamp and frame. Channels and dtype must match the encoding.
    """
    from sensor_msgs.msg import Image

    info = encoding_info(encoding)
    arr = np.asarray(arr)
    if info.kind == "yuv422":
        expect_ch = 2
    else:
        expect_ch = info.channels
    ch = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if arr.ndim not in (2, 3) or ch != expect_ch:
        raise ImageConversionError(
            f"Array of shape {arr.shape} does not fit encoding '{encoding}' "
            f"({expect_ch} channel{'s' if expect_ch > 1 else ''})"
        )
    if arr.dtype != info.dtype:
        raise ImageConversionError(f"Array dtype {arr.dtype} does not fit encoding '{encoding}' (needs {info.dtype})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"Array of shape {arr.shape} has zero size")
    msg = new_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big" and info.dtype.itemsize > 1
    msg.step = int(arr.shape[1] * expect_ch * info.dtype.itemsize)
    msg.data = _to_byte_array(arr)
    return msg


def compressed_to_numpy(msg: Any, want: str = "rgb8") -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg/png) to rgb8, bgr8 or mono8."""
    import cv2

    fmt = str(getattr(msg, "format", "")).lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageConversionError(
            f"CompressedImage field 'format'='{msg.format}' is not supported; supported: jpeg, png"
        )
    buf = np.frombuffer(_buffer(msg.data), dtype=np.uint8)
    if buf.size == 0:
        raise ImageConversionError("CompressedImage field 'data' is empty")
    flag = cv2.IMREAD_GRAYSCALE if want == "mono8" else cv2.IMREAD_COLOR
    img = cv2.imdecode(buf, flag)
    if img is None:
        raise ImageConversionError(f"CompressedImage 'data' ({buf.size} bytes) is not a valid {fmt} stream")
    if want == "rgb8":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif want not in ("bgr8", "mono8"):
        raise ImageConversionError(f"compressed_to_numpy: want='{want}' must be rgb8, bgr8 or mono8")
    return img


def numpy_to_compressed(
    arr: np.ndarray, encoding: str = "rgb8", fmt: str = "jpeg", quality: int = 90, header: Any = None
) -> Any:
    """Encode an rgb8/bgr8/mono8 array as sensor_msgs/CompressedImage (jpeg or png)."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"format '{fmt}' is not supported; use jpeg or png")
    img = np.asarray(arr)
    if encoding == "rgb8":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif encoding not in ("bgr8", "mono8"):
        raise ImageConversionError(f"encoding '{encoding}' cannot be compressed; use rgb8, bgr8 or mono8")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, data = cv2.imencode("." + ("jpg" if fmt == "jpeg" else "png"), img, params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    msg = new_message(CompressedImage)
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; {fmt} compressed {encoding}"
    msg.data = _to_byte_array(data)
    return msg
