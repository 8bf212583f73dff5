from limuse_edge.train.config import TrainConfig
from limuse_edge.train.trainer import train

__all__ = ["TrainConfig", "train"]
