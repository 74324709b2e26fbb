"""Detector(labels=...): the bundled model follows the clinicians' consensus by default and the ISBI 2015 challenge's
ground truth on request (a second local stage beside it)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from sdk import ISBI19, Detector, ModelError
from sdk.detector import DEFAULT_MODEL, MODELS_DIR
from sdk.local_stage import local_stage_conventions

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))
STP = ISBI19.names.index("soft_tissue_pogonion")


@pytest.fixture(scope="module")
def pair():
    return Detector(backend="onnxruntime"), Detector(backend="onnxruntime", labels="challenge")


def test_bundled_model_offers_both_conventions(pair):
    assert local_stage_conventions(MODELS_DIR / DEFAULT_MODEL) == ["consensus", "challenge"]
    consensus, challenge = pair
    assert consensus.info["labels"] == "consensus" and consensus.local.path.name == "isbi19_default_int8.local.onnx"
    assert challenge.info["labels"] == "challenge"
    assert challenge.local.path.name == "isbi19_default_int8.challenge.local.onnx"
    assert challenge.local.calibration is not None


def test_challenge_labels_put_soft_tissue_pogonion_lower(pair):
    """The challenge's ground truth is the senior annotator's, who puts soft-tissue pogonion ~8 mm lower than the
    junior on the training images: the challenge reading must sit below the consensus one on every image."""
    consensus, challenge = pair
    dy, moved = [], []
    for p in IMGS:
        a, b = consensus(p), challenge(p)
        assert (a.labels, b.labels) == ("consensus", "challenge")
        dy.append((b.xy[STP, 1] - a.xy[STP, 1]) * 0.4)          # fixture images: 0.4 mm per pixel
        moved.append(np.linalg.norm(b.xy - a.xy, axis=1).mean() * 0.4)
    assert min(dy) > 0 and np.mean(dy) > 0.5
    assert 0.1 < np.mean(moved) < 2.0          # the same skull, another convention: not another reading


def test_unknown_labels_or_no_local_stage_refused_with_the_choices():
    with pytest.raises(ModelError, match=r"labels='nope'.*consensus, challenge"):
        Detector(backend="onnxruntime", labels="nope")
    with pytest.raises(ModelError, match="local_stage=False"):
        Detector(backend="onnxruntime", labels="challenge", local_stage=False)


def test_cli_predict_takes_labels(tmp_path):
    from cephalo.cli import main

    r = CliRunner().invoke(main, ["predict", str(IMGS[0]), "--backend", "onnxruntime", "--labels", "challenge",
                                  "--out", str(tmp_path)])
    assert r.exit_code in (0, 3), r.output
    rec = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert rec["labels"] == "challenge"        # a clinic mixing conventions can tell the records apart
    want = Detector(backend="onnxruntime", labels="challenge")(IMGS[0]).xy
    got = np.array([[p["x"], p["y"]] for p in rec["landmarks"]])
    assert np.allclose(got, want, atol=0.05)
    bad = CliRunner().invoke(main, ["predict", str(IMGS[0]), "--labels", "nope"])
    assert bad.exit_code != 0 and "labels='nope'" in bad.output
