"""ModelConfig: validation, round trips, presets."""
from __future__ import annotations

import pytest

from limuse_edge.config import PRESETS, ModelConfig, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_dict_and_yaml(name, tmp_path):
    cfg = get_preset(name)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    cfg.to_yaml(tmp_path / "model.yaml")
    assert ModelConfig.from_yaml(tmp_path / "model.yaml") == cfg


def test_paper_frame_count():
    assert ModelConfig().n_frames(48_000) == 2999


def test_fusion_widths_scale_with_the_number_of_streams():
    cfg = get_preset("no_vp_k32")
    assert cfg.n_streams == 2
    assert (cfg.fusion_dim, cfg.fusion_hidden, cfg.fusion_context_hidden) == (256, 1024, 512)


def test_unknown_preset_names_it_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^preset: unknown 'limuse_k64'; expected one of \[.*'limuse_k32'"):
        get_preset("limuse_k64")


@pytest.mark.parametrize("changes, message", [
    (dict(cues=("audio",)), r"^cues: unknown \['audio'\]"),
    (dict(mask_activation="tanh"), r"^mask_activation: got 'tanh'; expected one of"),
    (dict(filter_length=31), r"^filter_length: got 31; expected an even number"),
    (dict(groups=24), r"^groups: 24 must divide every grouped width"),
    (dict(context_size=7), r"^context_size: got 7; expected an even number"),
])
def test_invalid_configs_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_unknown_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("n_filters: 64\nn_filter: 64\n")
    with pytest.raises(ValueError, match=r"^model config: unknown keys \['n_filter'\]"):
        ModelConfig.from_yaml(path)


def test_an_empty_config_file_is_the_paper_default(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("")
    assert ModelConfig.from_yaml(path) == get_preset("limuse_k32")
