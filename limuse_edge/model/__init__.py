from limuse_edge.model.limuse import LiMuSE, model_inputs

__all__ = ["LiMuSE", "model_inputs"]
