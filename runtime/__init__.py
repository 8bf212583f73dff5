"""limuse_runtime: LiMuSE inference on CPU boards with numpy, onnxruntime and soundfile only (never torch)."""
