"""Data: the synthetic scene generator (``synth``), writers for training sets and bags, and
readers for the real formats users have (``readers``)."""
