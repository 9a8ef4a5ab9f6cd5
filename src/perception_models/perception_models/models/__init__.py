"""Networks as backbone + neck + heads (so a multi-task model is a configuration):

- ``backbone.py``: a small residual CNN giving features at strides 4, 8, 16, 32.
- ``neck.py``: a feature pyramid (FPN) over strides 8–32 for the detector.
- ``detection.py``: RetinaNet-style anchor-based one-stage detector; decoding and NMS inside the
  exported graph (``DetectorWithPostprocess``), fixed number of outputs.
- ``segmentation.py``: DeepLabv3+-style head: atrous pyramid (ASPP) + skip connections.
- ``anchors.py``, ``nms.py``, ``losses.py``: anchors and box coding, graph-friendly NMS, focal
  loss / online hard negative mining / pixel-wise cross-entropy.
"""
