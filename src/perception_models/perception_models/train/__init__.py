"""Training: datasets with augmentation (``data.py``), one loop for every task (``trainer.py``) and the
tasks it trains (``image_task.py``: detection, segmentation; ``depth_task.py``; ``matching_task.py``)."""
