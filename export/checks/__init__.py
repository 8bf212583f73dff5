"""The checks an export runs on its files: parity against Brevitas, the golden engine code for code, the
packed model kernel by kernel, and the QONNX file under qonnx's executor."""
