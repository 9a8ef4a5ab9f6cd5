"""Synthetic scenes with exact ground truth for every task (see sequence.py for the entry point)."""

from .scene import CLASSES, PALETTE, PRESETS, THING_CLASSES
from .sequence import GENERATOR_VERSION, Box, Frame, SynthConfig, SyntheticSequence

__all__ = [
    "CLASSES",
    "PALETTE",
    "PRESETS",
    "THING_CLASSES",
    "GENERATOR_VERSION",
    "Box",
    "Frame",
    "SynthConfig",
    "SyntheticSequence",
]
