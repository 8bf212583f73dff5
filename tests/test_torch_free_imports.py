"""The torch-free parts of limuse_edge import without torch: a subprocess whose import system refuses
torch (and brevitas), as on a machine where it is not installed."""
from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "brevitas"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
""")


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True)


def test_the_blocker_does_block_torch():
    result = _run_without_torch("import torch")
    assert result.returncode != 0 and "blocked by the test" in result.stderr


def test_limuse_edge_config_recipes_and_data_cues_import_without_torch():
    result = _run_without_torch("""
        import sys
        import limuse_edge
        from limuse_edge import PRESETS, ModelConfig, get_preset
        import limuse_edge.config, limuse_edge.data.cues, limuse_edge.data.layout
        from limuse_edge.quant import QuantRecipe
        cfg = get_preset("tiny")
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
        assert QuantRecipe.parse("w3a8-po2-inorm").name == "w3a8-po2-inorm"
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_torch_heavy_names_still_load_on_first_use():
    import limuse_edge
    assert limuse_edge.get_recipe("w3a8").quantized
    assert limuse_edge.QuantRecipe().quantized is False
