import json

from limuse_edge.checkpoint import build_model, save_checkpoint
from limuse_edge.cli import main
from limuse_edge.data.build import build_corpus


def test_evaluate_cli_writes_summary_and_per_utterance_csv(tmp_path, capsys):
    corpus = tmp_path / "mc"
    build_corpus(corpus, n_train=2, n_valid=2, n_test=3, seed=5, seconds=1.0, workers=1, progress=False,
                 speakers_per_split={"train": 4, "valid": 2, "test": 2})
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_model("tiny"))
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(corpus), "--split", "test",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "evaluate.json").read_text())
    assert summary["n_utterances"] == 3
    for key in ("si_sdr", "sdr", "sdri", "mixture_si_sdr", "mixture_sdr"):
        assert isinstance(summary[key], float)
    # SDRi is the SDR gain over mixture mic 0, utterance by utterance.
    assert abs(summary["sdri"] - (summary["sdr"] - summary["mixture_sdr"])) < 1e-6
    lines = (out / "per_utterance.csv").read_text().splitlines()
    assert lines[0].startswith("name,si_sdr,sdr,sdri") and len(lines) == 4
    assert "3 utterances (test)" in capsys.readouterr().out


def test_evaluate_cli_reports_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.pt" in err and len(err.splitlines()) == 1


def test_evaluate_scores_the_plain_layers_outputs_within_float_rounding(tmp_path):
    """evaluate() runs the trainer's fast kernels; its scores are those of the plain layers' outputs."""
    import numpy as np
    import pytest
    import torch

    from limuse_edge.data import MCGridDataset
    from limuse_edge.evaluate import evaluate
    from limuse_edge.metrics import si_sdr
    from limuse_edge.quant import calibrate
    from limuse_edge.train.trainer import model_inputs

    corpus = tmp_path / "mc"
    build_corpus(corpus, n_train=0, n_valid=0, n_test=2, seed=5, seconds=1.0, workers=1, progress=False,
                 speakers_per_split={"train": 2, "valid": 2, "test": 2})
    dataset = MCGridDataset(corpus, "test")
    batch = {k: (torch.stack([dataset[i][k] for i in range(2)]) if torch.is_tensor(dataset[0][k]) else
                 [dataset[i][k] for i in range(2)]) for k in dataset[0]}
    for recipe in ("float", "w3a8"):
        torch.manual_seed(0)
        model = build_model("tiny", recipe)
        if model.recipe.quantized:
            calibrate(model, [dict(zip(("mixture", "voiceprint", "visual"), model_inputs(model, batch, "cpu")))])
        model.eval()
        with torch.no_grad():
            plain = model(*model_inputs(model, batch, "cpu")).numpy().astype(np.float64)
        rows = evaluate(model, dataset, batch_size=2, progress=False)["rows"]
        expected = si_sdr(plain, batch["target"].numpy().astype(np.float64))
        assert [r["si_sdr"] for r in rows] == pytest.approx(list(expected), abs=0.05), recipe
