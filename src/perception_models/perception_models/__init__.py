"""Models, data, training, metrics and export of the perception stack.

The task issues fill this package (detection, segmentation, depth + odometry, matching).
It is the only package that imports torch; perception_nodes never does.
"""

__version__ = "0.1.0"
