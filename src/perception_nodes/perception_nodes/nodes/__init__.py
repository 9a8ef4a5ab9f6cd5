"""Thin ROS wrappers: topics, parameters and timing around the pipelines.

Every node executable imports this package before NumPy, so it is where a node process limits
NumPy's BLAS to one thread (unless the user set ``OPENBLAS_NUM_THREADS``): the nodes' matrix work
is small (plane fits, ground warps, descriptor similarities) and OpenBLAS's own worker threads,
spinning next to ONNX Runtime's and the other nodes' on a few cores, made it slow. Measured on
the demo bag with a training job on the same two cores: the multitask node's RANSAC ground-plane
product (4000 x 3 by 3 x 100) took 8 ms with two BLAS threads and 0.1 ms with one, and the stack
answered each frame in 127-132 ms instead of 148-151 ms (median, two runs each).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
