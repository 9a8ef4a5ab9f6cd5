"""Decoders of third-party model families (Isaac ROS style: one decoder per family behind the shared
task nodes). Each module turns a family's raw network outputs into what the task pipelines publish:

- ``yolo``: ultralytics YOLOv8 / YOLO11 detect and segment heads (``[1, 4+nc(+32), N]`` + prototypes)
- ``yolox``: YOLOX raw grid head (``[1, N, 5+nc]``, strides 8/16/32)
- ``relative_depth``: affine-invariant inverse depth (Depth Anything, MiDaS) and its scale + shift fit
- ``keypoints``: SuperPoint-style heads (65-channel cell logits with a dustbin + a dense descriptor map)
- ``lightglue``: LightGlue-style matchers (normalised keypoints + descriptors in, index pairs out)
- ``nms``: vectorised class-aware non-maximum suppression shared by the detectors

``perception_nodes.model_import`` recognises the family of an ONNX file and writes its model card.
No module here imports ROS or torch.
"""
