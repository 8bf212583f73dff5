"""Bad input: a clear one-line error naming the file and the problem, and never a half-built corpus."""
import numpy as np
import pytest
import soundfile as sf

from limuse_edge.cli import main
from limuse_edge.data import MCGridDataset, layout
from limuse_edge.data.build import build_corpus


def _leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.building-") or p.name == name)


def test_speech_folder_with_too_few_speakers(tmp_path, make_speech_dir, capsys):
    speech = tmp_path / "speech"
    make_speech_dir(speech, n_speakers=3, n_utts=2)
    out = tmp_path / "corpus"
    code = main(["make-corpus", "--out", str(out), "--speech", str(speech), "--train", "2", "--valid", "0",
                 "--test", "0", "--seed", "1", "--workers", "1"])
    err = capsys.readouterr().err
    assert code != 0
    assert "3 speakers" in err and "at least 4" in err and str(speech) in err
    assert len(err.strip().splitlines()) == 1
    assert _leftovers(tmp_path, "corpus") == []


def test_unreadable_audio_file_names_it_and_leaves_nothing(tmp_path, make_speech_dir):
    speech = tmp_path / "speech"
    make_speech_dir(speech, n_speakers=4, n_utts=2)
    bad = speech / "p226" / "p226_000.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match=r"p226_000\.wav: cannot read audio"):
        build_corpus(tmp_path / "corpus", 4, 0, 0, seed=1, seconds=1.0, speech_dir=speech, workers=2, progress=False)
    assert _leftovers(tmp_path, "corpus") == []


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(ValueError, match="already exists"):
        build_corpus(out, 2, 0, 0, seed=1, progress=False)
    assert (out / "keep").read_text() == "x"


def test_list_line_naming_a_missing_file(corpus_copy):
    line = layout.read_list(corpus_copy, "test")[2]
    (corpus_copy / line.target).unlink()
    with pytest.raises(FileNotFoundError, match=r"datalist_2mix_test\.txt:3: target file .*_target\.wav not found"):
        MCGridDataset(corpus_copy, split="test")


def test_list_line_with_wrong_field_count(corpus_copy):
    path = layout.list_path(corpus_copy, "valid")
    path.write_text(path.read_text() + "mixture/valid/x.wav only-two\n")
    with pytest.raises(ValueError, match=r"datalist_2mix_valid\.txt:5: 2 fields; expected 10"):
        MCGridDataset(corpus_copy, split="valid")


def test_mixture_with_wrong_channel_count(corpus_copy):
    line = layout.read_list(corpus_copy, "test")[0]
    mixture, rate = sf.read(corpus_copy / line.mixture)
    sf.write(str(corpus_copy / line.mixture), mixture[:, 0], rate)
    ds = MCGridDataset(corpus_copy, split="test")
    with pytest.raises(ValueError, match=r"_mix\.wav: mixture has 1 channel\(s\); expected 2"):
        ds[0]


def test_lip_features_of_the_wrong_shape(corpus_copy):
    ds = MCGridDataset(corpus_copy, split="train")
    index = next(i for i, line in enumerate(ds.lines) if (corpus_copy / line.lip).exists())
    np.save(corpus_copy / ds.lines[index].lip, np.zeros((25, 128), np.float32))
    with pytest.raises(ValueError, match=r"\.npy: lip features of shape \(25, 128\); expected \(25, 256\)"):
        ds[index]


def test_missing_voiceprint_key(corpus_copy):
    import pickle
    path = corpus_copy / layout.VOICEPRINT_FILE
    table = pickle.loads(path.read_bytes())
    key = layout.read_list(corpus_copy, "valid")[1].voiceprint_key
    del table[key]
    path.write_bytes(pickle.dumps(table))
    with pytest.raises(KeyError, match=key):
        MCGridDataset(corpus_copy, split="valid")


def test_missing_corpus_and_unknown_split(tmp_path):
    with pytest.raises(NotADirectoryError, match="corpus root not found"):
        MCGridDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="expected one of"):
        MCGridDataset(tmp_path, split="dev")
    with pytest.raises(FileNotFoundError, match="list file not found"):
        MCGridDataset(tmp_path, split="train")
