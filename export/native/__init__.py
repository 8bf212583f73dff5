"""The native engine's model file: the byte format, lowering a QONNX graph to kernel records, fusion,
memory planning, and the export step that packs and runs it."""
