"""Baseline towers behind the Pyramid Mixer's interface: ``forward(tokens, mask, target) -> B X out_dim``."""
