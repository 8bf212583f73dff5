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
