"""What each quantization choice costs before any QAT: the bundled float limuse_k32 is loaded into each
recipe, its activation quantizers are calibrated on a few batches, and it is scored on held-out
mixtures (post-training quantization). QAT then starts from the chosen recipe; its result is in
quality.json."""
from __future__ import annotations

import torch
import pytest

from limuse_edge.checkpoint import convert_recipe, load_checkpoint
from limuse_edge.data import MCGridDataset, make_loader
from limuse_edge.data.build import build_corpus
from limuse_edge.evaluate import evaluate
from limuse_edge.pretrained import pretrained_path
from limuse_edge.quant import calibrate
from limuse_edge.train.trainer import calibration_batches

RECIPES = ["float", "w8a8", "w4a8", "w3a8", "w3a8-pc", "w3a8-edge8"]
N_UTTERANCES = 12


@pytest.mark.slow(reason="post-training quantization sweep: 6 recipes of limuse_k32 calibrated and evaluated")
def test_post_training_quantization_of_each_recipe(results, tmp_path):
    corpus = tmp_path / "heldout"
    build_corpus(corpus, n_train=0, n_valid=8, n_test=N_UTTERANCES, seed=9002, seconds=3.0, workers=2,
                 progress=False)
    calib = make_loader(MCGridDataset(corpus, "valid", segment_seconds=None), batch_size=4, shuffle=False)
    test = MCGridDataset(corpus, "test", segment_seconds=None)

    rows = []
    for recipe in RECIPES:
        model = convert_recipe(load_checkpoint(pretrained_path("limuse_k32_float"))[0], recipe)
        if model.recipe.quantized:
            calibrate(model, calibration_batches(model, calib, n_batches=2, device=torch.device("cpu")))
        s = evaluate(model, test, batch_size=4, progress=False)["summary"]
        rows.append({"recipe": recipe, "si_sdr": s["si_sdr"], "sdr": s["sdr"], "sdri": s["sdri"],
                     "mixture_si_sdr": s["mixture_si_sdr"]})
    ref = rows[0]["si_sdr"]
    for r in rows:
        r["drop_db"] = ref - r["si_sdr"]
    table = results.table(["recipe", "SI-SDR", "SDR", "SDRi", "drop vs float (dB)"],
                          [[r["recipe"], f"{r['si_sdr']:.2f}", f"{r['sdr']:.2f}", f"{r['sdri']:.2f}",
                            f"{r['drop_db']:.2f}"] for r in rows])
    results.write("quant_recipes", {"n_utterances": len(test), "calibration_batches": 2, "rows": rows},
                  f"# Post-training quantization of limuse_k32 (no QAT), {len(test)} held-out mixtures\n\n"
                  f"mixture SI-SDR {rows[0]['mixture_si_sdr']:.2f} dB\n\n{table}")
    by = {r["recipe"]: r["si_sdr"] for r in rows}
    # 8-bit weights must stay close to float; anything else would point at a broken quantizer setup.
    assert abs(by["w8a8"] - by["float"]) < 1.0, by
