"""Plain-Python pipelines (preprocess -> backend -> postprocess): numpy in, numpy out, no ROS."""
