"""limuse_edge: LiMuSE target-speaker extraction from training to integer inference on CPU boards."""
from limuse_edge.config import PRESETS, ModelConfig, get_preset

__version__ = "0.1.0"
__all__ = ["PRESETS", "ModelConfig", "QuantRecipe", "get_preset", "get_recipe", "build_model", "from_pretrained", "LiMuSE"]


def __getattr__(name):  # torch-heavy names load on first use, so `import limuse_edge` needs no torch
    if name in ("QuantRecipe", "get_recipe"):
        from limuse_edge import quant
        return getattr(quant, name)
    if name == "LiMuSE":
        from limuse_edge.model import LiMuSE
        return LiMuSE
    if name == "from_pretrained":
        from limuse_edge.pretrained import from_pretrained
        return from_pretrained
    if name == "build_model":
        from limuse_edge.checkpoint import build_model
        return build_model
    raise AttributeError(name)
