"""Thin ROS wrappers: topics, parameters and timing around the pipelines."""
