"""Bit-exact integer golden engine for exported W3A8 (power-of-two) LiMuSE models. numpy only."""
from limuse_runtime.golden.engine import GoldenEngine, Trace
from limuse_runtime.golden.fixed_point import GoldenError, QTensor

__all__ = ["GoldenEngine", "GoldenError", "QTensor", "Trace"]
