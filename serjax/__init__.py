"""serjax: speech emotion recognition with a CNN and Efficient Channel Attention, in JAX/Flax."""

__version__ = "0.1.0"
