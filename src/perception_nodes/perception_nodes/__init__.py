"""ROS 2 nodes of the perception stack (rclpy; never imports torch).

Layout: ``image_conversion`` (Image <-> numpy), ``backends`` (ONNX Runtime, TensorRT),
``pipelines`` (preprocess -> backend -> postprocess, no ROS), ``node_base`` (parameters,
lifecycle, QoS, input policy, diagnostics shared by every node), ``nodes`` (thin ROS wrappers),
``bag_io`` / ``nodes.bag_player`` / ``nodes.bag_recorder`` (replay and record), ``sync``
(approximate-time synchronizer), ``profile`` / ``launcher`` / ``cli`` (starting a stack).
"""

__version__ = "0.1.0"
