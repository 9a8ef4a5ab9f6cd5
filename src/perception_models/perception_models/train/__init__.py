"""Training: datasets with augmentation (``data.py``) and one trainer for every task (``trainer.py``)."""
