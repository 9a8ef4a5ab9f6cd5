"""The launcher's Fast DDS profile: a shared-memory segment sized for the frames that travel (a
4K rgb8 frame did not fit the shipped 16 MiB and vanished on best-effort inputs without a log),
UDP bound to loopback for the replay tools (sockets were bound to 0.0.0.0 even with localhost
discovery), and a profile the user chose is left alone."""

from __future__ import annotations

import ipaddress
import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil

from perception_nodes.dds_profile import (
    DEFAULT_SEGMENT_BYTES,
    SEGMENT_ENV,
    apply_profile,
    fastdds_xml,
    segment_bytes_for,
)
from perception_nodes.launcher import StackProcesses, profile_frame_bytes
from perception_nodes.profile import NodeSpec, Profile
from test_nodes_integration import generic_node

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "fastdds_shm.xml"
NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_segment_holds_four_frames_and_never_shrinks_below_the_default():
    assert segment_bytes_for(640 * 480 * 3) == DEFAULT_SEGMENT_BYTES
    four_k = 3840 * 2160 * 3
    assert segment_bytes_for(four_k) >= 4 * four_k and segment_bytes_for(four_k) % 2**20 == 0


def test_generated_xml_is_valid_and_binds_udp_to_the_given_interfaces():
    root = ET.fromstring(fastdds_xml(64 * 2**20, ["127.0.0.1"]))
    assert root.find(".//f:segment_size", NS).text == str(64 * 2**20)
    assert [a.text for a in root.findall(".//f:interfaceWhiteList/f:address", NS)] == ["127.0.0.1"]
    assert ET.fromstring(fastdds_xml()).find(".//f:interfaceWhiteList", NS) is None


def test_a_profile_the_user_chose_is_kept(tmp_path):
    mine = tmp_path / "mine.xml"
    env = apply_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": str(mine)}, SHIPPED, tmp_path, 99 * 2**20, ["127.0.0.1"])
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(mine) and not (tmp_path / "fastdds_profile.xml").exists()
    env = apply_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED)}, SHIPPED, tmp_path, 99 * 2**20, None)
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(tmp_path / "fastdds_profile.xml")
    assert env[SEGMENT_ENV] == str(99 * 2**20)


def test_the_segment_is_sized_from_the_cameras_resolution(tmp_path):
    cam = NodeSpec("camera", "camera_source", parameters={"source": "/dev/video0", "width": 3840, "height": 2160})
    assert profile_frame_bytes(Profile("p", "", [cam])) == 3840 * 2160 * 3
    stack = StackProcesses(Profile("p", "", [cam]), tmp_path)
    assert int(stack.env[SEGMENT_ENV]) >= 4 * 3840 * 2160 * 3
    xml = Path(stack.env["FASTRTPS_DEFAULT_PROFILES_FILE"]).read_text()
    assert f"<segment_size>{stack.env[SEGMENT_ENV]}</segment_size>" in xml


def test_replay_tools_listen_on_loopback_only(tmp_path, demo_model):
    with StackProcesses(generic_node("lo", demo_model), tmp_path / "logs", interfaces=["127.0.0.1"]) as stack:
        proc = psutil.Process(stack.procs["lo"].pid)
        deadline = time.monotonic() + 30
        socks: list = []
        while time.monotonic() < deadline and not socks:
            time.sleep(0.5)
            socks = proc.net_connections(kind="udp")
        assert socks, stack.log_text("lo")
        time.sleep(1.0)
        for c in proc.net_connections(kind="udp"):
            ip = ipaddress.ip_address(c.laddr.ip)
            assert ip.is_loopback or ip.is_multicast, f"UDP socket bound to {c.laddr} ({stack.log_text('lo')})"


def test_the_player_counts_frames_larger_than_the_segment(tmp_path, demo_bag):
    """A frame over the segment is logged and counted (here a 1000-byte limit against VGA frames)."""
    summary = tmp_path / "player.json"
    player = NodeSpec(
        "player",
        "bag_player",
        parameters={
            "bag_path": str(demo_bag),
            "mode": "fast",
            "topics": ["/camera/image_raw"],
            "wait_for_nodes_timeout": 0.0,
            "start_delay": 0.0,
            "summary_path": str(summary),
            "exit_when_done": True,
        },
    )
    stack = StackProcesses(Profile("p", "", [player]), tmp_path / "logs", env={**os.environ, SEGMENT_ENV: "1000"})
    with stack:
        assert stack.wait("player", 60) == 0, stack.log_text("player")
    assert json.loads(summary.read_text())["messages_over_transport_limit"] == 20
    assert "larger than the 1000 byte shared-memory segment" in stack.log_text("player")


def test_stale_shared_memory_of_dead_participants_is_removed_and_live_ones_kept(tmp_path):
    """A participant killed without closing leaves its segment in /dev/shm (RAM) until reboot;
    a live one keeps its ``_el`` file flock()ed. Only unlocked, not brand-new ones go."""
    import fcntl
    import os
    import time

    from perception_nodes.dds_profile import remove_stale_shm

    def files(base: str, size: int) -> None:
        (tmp_path / base).write_bytes(b"\0" * size)
        (tmp_path / f"{base}_el").touch()

    files("fastrtps_0123456789abcdef", 4096)  # dead participant's segment
    files("fastrtps_fedcba9876543210", 4096)  # live one: locked below
    files("fastrtps_port7411", 512)  # dead port, with its mutex
    (tmp_path / "sem.fastrtps_port7411_mutex").touch()
    files("fastrtps_aaaaaaaaaaaaaaaa", 4096)  # dead, but its lock file was made just now
    (tmp_path / "unrelated_el").touch()
    old = time.time() - 60
    for name in os.listdir(tmp_path):
        if name != "fastrtps_aaaaaaaaaaaaaaaa_el":
            os.utime(tmp_path / name, (old, old))
    held = open(tmp_path / "fastrtps_fedcba9876543210_el", "ab")  # noqa: SIM115
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        removed, freed = remove_stale_shm(tmp_path)
    finally:
        held.close()
    assert (removed, freed) == (2, 4096 + 512)
    assert sorted(os.listdir(tmp_path)) == [
        "fastrtps_aaaaaaaaaaaaaaaa",
        "fastrtps_aaaaaaaaaaaaaaaa_el",
        "fastrtps_fedcba9876543210",
        "fastrtps_fedcba9876543210_el",
        "unrelated_el",
    ]
