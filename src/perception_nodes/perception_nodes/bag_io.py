"""rosbag2 reading and writing through ``rosbags`` (rosbag2_py is not on PyPI). No rclpy.

- :func:`open_bag` reads MCAP and sqlite3 rosbag2 bags (a directory with metadata.yaml, or a
  bare .mcap file) and yields ``(topic, msgtype, timestamp_ns, cdr_bytes)`` in time order; the
  CDR bytes go to ``Publisher.publish(bytes)`` as they are.
- :class:`BagWriter` writes MCAP rosbag2 bags with the message definitions embedded (Foxglove
  and ``ros2 bag`` both open them); perception_msgs types are registered from their installed
  .msg files, so custom messages are readable anywhere.
- :func:`header_stamp_ns` reads ``header.stamp`` straight from CDR bytes (no deserialisation).
- A truncated MCAP (a recorder that crashed or was killed: no footer, no summary, perhaps no
  metadata.yaml) is read up to the cut with the ``mcap`` stream reader; :class:`BagInfo` then
  says how many messages were recovered (``recovered``), and every tool prints it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np


class BagError(RuntimeError):
    """A bag that cannot be opened or read; the text names the file and the problem."""


OWN_PACKAGES = ("perception_msgs", "vision_msgs")


def typestore(bag: str | os.PathLike[str] | None = None) -> Any:
    """A rosbags typestore for ROS 2 Jazzy plus the installed perception_msgs. With ``bag``, the
    perception_msgs definitions that bag stores (MCAP embeds them) come first, so a bag recorded
    with an older perception_msgs still reads as it was written."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    stored = _stored_msg_types(Path(bag), OWN_PACKAGES) if bag is not None else {}
    if stored:
        store.register(stored)
    register_installed_msgs(store, OWN_PACKAGES, skip=set(stored))
    return store


def _stored_msg_types(path: Path, packages: Sequence[str]) -> dict[str, Any]:
    """The definitions of ``packages``' types that a bag's connections carry (ros2msg format)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_msg

    try:
        reader = _reader(path)
    except BagError:  # a truncated bag: the installed definitions
        return {}
    types: dict[str, Any] = {}
    try:
        for c in reader.connections:
            msgdef = getattr(c, "msgdef", None)
            if msgdef is None or msgdef.format != MessageDefinitionFormat.MSG or not msgdef.data:
                continue
            try:
                parsed = get_types_from_msg(msgdef.data, c.msgtype)
            except Exception:  # an unparsable stored definition: fall back to the installed one
                continue
            types.update({k: v for k, v in parsed.items() if k.split("/")[0] in packages})
    finally:
        reader.close()
    return types


def _ament_prefixes() -> list[Path]:
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    import sys

    prefixes.append(Path(sys.prefix))  # the venv of install path (a)
    return prefixes


def register_installed_msgs(store: Any, packages: Sequence[str], skip: set[str] | None = None) -> list[str]:
    """Register ``share/<pkg>/msg/*.msg`` of each package into ``store`` (except the type names in
    ``skip``); returns the names registered."""
    from rosbags.typesys import get_types_from_msg

    types: dict[str, Any] = {}
    for pkg in packages:
        for prefix in _ament_prefixes():
            msg_dir = prefix / "share" / pkg / "msg"
            if msg_dir.is_dir():
                for f in sorted(msg_dir.glob("*.msg")):
                    name = f"{pkg}/msg/{f.stem}"
                    if name not in (skip or ()):
                        types.update(
                            {k: v for k, v in get_types_from_msg(f.read_text(), name).items() if k not in (skip or ())}
                        )
                break
    if types:
        store.register(types)
    return sorted(types)


def header_stamp_ns(cdr: bytes | memoryview) -> int:
    """``header.stamp`` of a CDR-serialised message whose first field is a std_msgs/Header."""
    if len(cdr) < 12:
        raise BagError(f"CDR message of {len(cdr)} bytes is too short to hold a header")
    little = cdr[1] == 1  # encapsulation id: 0x0001 = CDR_LE, 0x0000 = CDR_BE
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", cdr, 4)
    return int(sec) * 1_000_000_000 + int(nsec)


def receive_times(recording: str | os.PathLike[str]) -> dict[tuple[str, int], list[int]] | None:
    """(topic, header stamp) -> the recorder's receive times (wall clock, ns; in arrival order) of a
    recording that has them (:data:`RECEIVE_TIMES`), else None (its log times are receive times)."""
    path = Path(recording) / RECEIVE_TIMES
    if not path.is_file():
        return None
    out: dict[tuple[str, int], list[int]] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:  # a line cut by a killed recorder is left out
            out.setdefault((parts[0], int(parts[1])), []).append(int(parts[2]))
    return out


def has_header(store: Any, msgtype: str) -> bool:
    """Whether a message type's first field is a std_msgs/Header (its stamp then leads its CDR)."""
    fields = store.fielddefs.get(msgtype)
    if not fields or not fields[1]:
        return False
    first = fields[1][0][1]
    return bool(first and first[0] == 2 and first[1] == "std_msgs/msg/Header")


def duplicate_stamps(path: str | os.PathLike[str], topic: str) -> str:
    """'' when every message of ``topic`` has its own header stamp, else what is shared (lockstep
    matches answers to frames by stamp, so such frames cannot be replayed in lockstep)."""
    from collections import Counter

    counts = Counter(header_stamp_ns(cdr) for _t, _m, _ts, cdr in read_messages(path, [topic]))
    shared = {s: c for s, c in counts.items() if c > 1}
    if not shared:
        return ""
    first = min(shared)
    return (
        f"{sum(shared.values())} of the {sum(counts.values())} messages on {topic} share "
        f"{len(shared)} header stamp(s) (e.g. {shared[first]} frames at {first} ns): lockstep tells "
        "answers apart by stamp; give each frame its own stamp (or replay in realtime mode)"
    )


@dataclass
class BagInfo:
    path: Path
    storage: str
    topics: dict[str, tuple[str, int]]  # topic -> (msgtype, count)
    start_ns: int
    end_ns: int
    recovered: int | None = None  # messages read from a truncated MCAP up to its cut
    problem: str = ""  # why the bag could not be opened normally

    @property
    def note(self) -> str:
        """One line for a truncated bag ('' for a complete one)."""
        if self.recovered is None:
            return ""
        return (
            f"bag '{self.path}' is truncated or was not closed ({self.problem}); recovered "
            f"{self.recovered} messages up to the cut"
        )

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def frame_topic_problem(
    bag: str | os.PathLike[str], info: BagInfo, topic: str, lockstep: bool
) -> tuple[str, str] | None:
    """Why ``topic`` of ``bag`` cannot be replayed frame by frame: ``("empty_input", why)`` when it
    has no messages, ``("duplicate_stamps", why)`` in lockstep when frames share a stamp; None when it
    can. The replay tools refuse before any node starts, the player when used on its own."""
    if topic not in info.topics or info.topics[topic][1] == 0:
        have = {t: c for t, (_m, c) in info.topics.items()}
        return "empty_input", f"bag '{bag}' has no messages on the frame topic {topic} (topics: {have})"
    if lockstep:
        dup = duplicate_stamps(bag, topic)
        if dup:
            return "duplicate_stamps", f"bag '{bag}': {dup}"
    return None


def _reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise BagError(f"bag '{path}' does not exist")
    try:
        reader = Reader(path)
        reader.open()
        return reader
    except Exception as exc:  # rosbags raises ReaderError and friends
        raise BagError(
            f"cannot open bag '{path}': {exc} (is it a rosbag2 directory with "
            "metadata.yaml, or an .mcap/.db3 file that is complete?)"
        ) from None


def _mcap_file(path: Path) -> Path | None:
    """The MCAP file of a bag path (the file itself, or the single .mcap in a bag directory)."""
    if path.is_file() and path.suffix == ".mcap":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        return files[0] if len(files) == 1 else None
    return None


def _recover_mcap(path: Path, topics: Sequence[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log_time_ns, cdr) of every complete message before the point where the
    file ends or stops parsing, in file order (a recorder writes in receive order)."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    with open(path, "rb") as f:
        records = StreamReader(f, skip_magic=False).records
        while True:
            try:
                rec = next(records)
            except StopIteration:
                return
            except Exception:  # the cut: a partial record, chunk or missing magic
                return
            if isinstance(rec, Schema):
                schemas[rec.id] = rec.name
            elif isinstance(rec, Channel):
                channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ""))
            elif isinstance(rec, Message) and rec.channel_id in channels:
                topic, msgtype = channels[rec.channel_id]
                if not topics or topic in topics:
                    yield topic, msgtype, int(rec.log_time), bytes(rec.data)


def _recovered_info(path: Path, problem: str) -> BagInfo | None:
    mcap = _mcap_file(path)
    if mcap is None:
        return None
    counts: dict[str, list[Any]] = {}
    start, end, n = None, None, 0
    for topic, msgtype, t, _cdr in _recover_mcap(mcap):
        entry = counts.setdefault(topic, [msgtype, 0])
        entry[1] += 1
        n += 1
        start = t if start is None else min(start, t)
        end = t if end is None else max(end, t)
    if not n:
        return None
    return BagInfo(
        path,
        "mcap",
        {t: (m, c) for t, (m, c) in counts.items()},
        int(start or 0),
        int(end or 0),
        recovered=n,
        problem=problem,
    )


def bag_info(path: str | os.PathLike[str]) -> BagInfo:
    """Topics, types, counts and time span of a bag; a truncated MCAP is read up to its cut
    (``recovered`` set). Raises BagError when neither works."""
    try:
        reader = _reader(Path(path))
    except BagError as exc:
        info = _recovered_info(Path(path), str(exc).split(": ", 1)[-1].split(" (is it")[0])
        if info is None:
            raise
        return info
    try:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        return BagInfo(
            Path(path), str(getattr(reader, "storage_plugin", "")) or "?", topics, reader.start_time, reader.end_time
        )
    finally:
        reader.close()


def read_messages(
    path: str | os.PathLike[str], topics: Sequence[str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield (topic, msgtype, log_time_ns, cdr) in time order; raise BagError on corruption. A
    truncated MCAP yields its messages up to the cut (see :func:`bag_info`)."""
    try:
        reader = _reader(Path(path))
    except BagError:
        info = _recovered_info(Path(path), "")
        if info is None:
            raise
        missing = set(topics or ()) - set(info.topics)
        if missing:
            raise BagError(
                f"bag '{path}' (truncated) has no topic(s) {sorted(missing)}; it has {sorted(info.topics)}"
            ) from None
        yield from _recover_mcap(_mcap_file(Path(path)), topics)  # type: ignore[arg-type]
        return
    try:
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        missing = set(topics or ()) - {c.topic for c in reader.connections}
        if missing:
            raise BagError(
                f"bag '{path}' has no topic(s) {sorted(missing)}; it has "
                f"{sorted({c.topic for c in reader.connections})}"
            )
        try:
            for conn, t, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, int(t), bytes(raw)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"bag '{path}' is corrupt or truncated: {type(exc).__name__}: {exc}") from None
    finally:
        reader.close()


COMPRESSIONS = ("zstd", "none")
# beside a recording's MCAP: topic, header stamp and the recorder's wall-clock receive time of each
# message (the MCAP's log times are bag time, so that recording and input bag line up in a viewer)
RECEIVE_TIMES = "receive_times.tsv"


class BagWriter:
    """Write a rosbag2 MCAP bag. ``write_raw`` takes CDR bytes, ``write`` a rosbags message.
    ``compression``: ``zstd`` compresses each MCAP chunk (what ``ros2 bag record
    --storage-preset-profile zstd_fast`` does; Foxglove and rosbag2 read it), ``none`` does not."""

    def __init__(self, path: str | os.PathLike[str], store: Any = None, compression: str = "zstd") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        if compression not in COMPRESSIONS:
            raise BagError(f"compression '{compression}' must be one of {COMPRESSIONS}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag '{self.path}' already exists; choose another path")
        self.store = store or typestore()
        self._writer: Any = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        if compression == "zstd":  # MCAP chunk compression; metadata.yaml then says none, as rosbag2's
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self._conns:
            return
        if msgtype not in self.store.fielddefs:
            pkg = msgtype.split("/")[0]
            register_installed_msgs(self.store, (pkg,))
        if msgtype not in self.store.fielddefs:
            raise BagError(
                f"message type '{msgtype}' of topic '{topic}' is unknown to the bag "
                "writer; install its package's .msg files"
            )
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self.counts[topic] = 0

    def write_raw(self, topic: str, msgtype: str, timestamp_ns: int, cdr: bytes) -> None:
        self.add_topic(topic, msgtype)
        self._writer.write(self._conns[topic], int(timestamp_ns), bytes(cdr))
        self.counts[topic] += 1

    def write(self, topic: str, msg: Any, timestamp_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, timestamp_ns, self.store.serialize_cdr(msg, msgtype))

    # rosbags messages for the topics every writer of camera bags needs
    def header(self, stamp_ns: int, frame_id: str) -> Any:
        T = self.store.types
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](
                sec=int(stamp_ns) // 1_000_000_000, nanosec=int(stamp_ns) % 1_000_000_000
            ),
            frame_id=frame_id,
        )

    def image(self, header: Any, arr: np.ndarray, encoding: str) -> Any:
        """sensor_msgs/Image of an (H, W[, C]) array (native byte order, no row padding)."""
        arr = np.ascontiguousarray(arr)
        return self.store.types["sensor_msgs/msg/Image"](
            header=header,
            height=arr.shape[0],
            width=arr.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=int(arr.strides[0]),
            data=arr.view(np.uint8).reshape(-1),
        )

    def camera_info(
        self,
        header: Any,
        width: int,
        height: int,
        K: np.ndarray,
        D: np.ndarray | None = None,
        R: np.ndarray | None = None,
        P: np.ndarray | None = None,
        distortion_model: str = "plumb_bob",
    ) -> Any:
        """sensor_msgs/CameraInfo; D defaults to 5 zeros, R to identity, P to [K | 0]."""
        T = self.store.types
        K = np.asarray(K, float).reshape(3, 3)
        return T["sensor_msgs/msg/CameraInfo"](
            header=header,
            height=height,
            width=width,
            distortion_model=distortion_model,
            d=np.zeros(5) if D is None else np.asarray(D, float),
            k=K.reshape(-1),
            r=np.eye(3).reshape(-1) if R is None else np.asarray(R, float).reshape(-1),
            p=np.hstack([K, np.zeros((3, 1))]).reshape(-1) if P is None else np.asarray(P, float).reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    def flush(self) -> None:
        """Write the messages buffered so far to disk as a complete MCAP chunk, so a writer that
        is killed later leaves a file readable up to here (see :func:`bag_info`)."""
        storage = getattr(self._writer, "storage", None) if self._writer is not None else None
        if storage is None:  # closed, or a storage plugin without the MCAP writer's buffers
            return
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.bio.tell() and hasattr(storage, "close_chunk"):
            storage.close_chunk()
        bio = getattr(storage, "bio", None)
        if bio is not None:
            bio.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
