"""MC_Grid-layout corpora: the loader (MCGridDataset, make_loader) and, in submodules, the offline builder.

- layout: list files, list lines, file names and voiceprint keys;
- talker: the synthetic source-filter talker; speech: reading a folder of recorded speech;
- spatial: two-mic anechoic propagation and mixing; cues: voiceprint and visual features;
- build: build_corpus (the `limuse-edge make-corpus` command is in cli).
"""
from __future__ import annotations

__all__ = ["MCGridDataset", "make_loader"]


def __getattr__(name):  # torch loads only when the loader is used, not for building corpora
    if name in __all__:
        from limuse_edge.data import dataset
        return getattr(dataset, name)
    raise AttributeError(name)
