from limuse_edge.model.limuse import LiMuSE

__all__ = ["LiMuSE"]
