"""The vision_msgs the stack publishes must be the standard ones, to the byte: a subscriber built
against ros-jazzy-vision-msgs 4.1.1 matches our publishers only if the type names, fields and
types agree, which ROS 2 Jazzy checks through the type hash (RIHS01) of each message. The hashes
below are those of upstream vision_msgs 4.1.1 built with the same rosidl (measured once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

UPSTREAM_4_1_1 = {
    "Point2D": "RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "ObjectHypothesis": "RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Detection2D": "RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_4_1_1))
def test_installed_vision_msgs_have_the_upstream_type_hashes(name):
    import vision_msgs

    # <prefix>/lib/python3.X/site-packages/vision_msgs; not resolved (a symlink install points into build/)
    prefix = Path(vision_msgs.__file__).parents[4]
    description = prefix / "share" / "vision_msgs" / "msg" / f"{name}.json"
    assert description.is_file(), f"no type description {description}"
    hashes = json.loads(description.read_text())["type_hashes"]
    assert hashes[0]["type_name"] == f"vision_msgs/msg/{name}"
    assert hashes[0]["hash_string"] == UPSTREAM_4_1_1[name]
