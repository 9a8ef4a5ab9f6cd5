"""odometry_node: the depth node with odometry on by default (see depth_node.py): one depth
inference per frame feeds depth, the point cloud and the motion estimate."""

from __future__ import annotations

from ..node_base import run_node
from .depth_node import DepthNode


class OdometryNode(DepthNode):
    schema_name = "odometry_node"


def main(args: list[str] | None = None) -> None:
    run_node(OdometryNode, "odometry_node", args)


if __name__ == "__main__":
    main()
