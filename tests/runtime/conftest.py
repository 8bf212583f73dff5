from __future__ import annotations

import pytest
import torch

from limuse_edge.checkpoint import build_model
from limuse_edge.config import PRESETS
from limuse_export.pipeline import export_onnx
from limuse_export.prepare import example_inputs, exportable
from limuse_export.save import save_onnx


def export_float(model, path):
    """`model` as the export pipeline writes its float file."""
    save_onnx(export_onnx("float", exportable(model), example_inputs(model, 16000)), path)
    return path


def untrained(config):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return build_model(config, "float").eval()


@pytest.fixture(scope="session")
def tiny_float_onnx(tmp_path_factory):
    return export_float(untrained("tiny"), tmp_path_factory.mktemp("onnx") / "tiny.float.onnx")


@pytest.fixture(scope="session")
def tiny_no_vp_onnx(tmp_path_factory):
    model = untrained(PRESETS["tiny"].replace(cues=("visual",)))
    return export_float(model, tmp_path_factory.mktemp("onnx") / "tiny_no_vp.float.onnx")
