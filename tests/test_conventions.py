"""Conventions are sites: the bundled model follows the clinicians' consensus by default, and Detector(site=
'challenge') the ISBI 2015 challenge's ground truth (a second local stage beside it). A site profile learnt on top
of a convention names it, so that it is applied behind the same local stage. ``labels=`` is the old name."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from sdk import ISBI19, Detector, ModelError
from sdk.detector import DEFAULT_MODEL, MODELS_DIR
from sdk.local_stage import local_stage_conventions
from sdk.site import SiteError, SiteProfile, fit_site

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))
STP = ISBI19.names.index("soft_tissue_pogonion")
MENTON = ISBI19.names.index("menton")
ISBI19_MEAN = np.array([   # a rough skull, pixels
    [800, 1000], [1400, 950], [1300, 1250], [650, 1150], [1350, 1400], [1280, 1750], [1300, 1900], [1250, 1950],
    [1200, 1920], [900, 1600], [1420, 1580], [1450, 1450], [1420, 1300], [1450, 1700], [1380, 1550], [1600, 1700],
    [1550, 1900], [1250, 1350], [780, 1500]], dtype=np.float64)


@pytest.fixture(scope="module")
def pair():
    return Detector(backend="onnxruntime"), Detector(backend="onnxruntime", site="challenge")


def test_bundled_model_offers_both_conventions(pair):
    assert local_stage_conventions(MODELS_DIR / DEFAULT_MODEL) == ["consensus", "challenge"]
    consensus, challenge = pair
    assert consensus.info["labels"] == "consensus" and consensus.local.path.name == "isbi19_default_int8.local.onnx"
    assert consensus.site is None and Detector(backend="onnxruntime", site="consensus").site is None
    assert challenge.info["labels"] == "challenge" and challenge.info["site"] == "challenge"
    assert challenge.local.path.name == "isbi19_default_int8.challenge.local.onnx"
    assert challenge.local.calibration is not None


def test_challenge_puts_soft_tissue_pogonion_lower(pair):
    """The challenge's ground truth is the senior annotator's, who puts soft-tissue pogonion ~8 mm lower than the
    junior on the training images: the challenge reading must sit below the consensus one on every image."""
    consensus, challenge = pair
    dy, moved = [], []
    for p in IMGS:
        a, b = consensus(p), challenge(p)
        assert (a.labels, b.labels) == ("consensus", "challenge")
        assert not any(b.site_placed or ())                      # a convention picks a local stage, moves nothing
        dy.append((b.xy[STP, 1] - a.xy[STP, 1]) * 0.4)          # fixture images: 0.4 mm per pixel
        moved.append(np.linalg.norm(b.xy - a.xy, axis=1).mean() * 0.4)
    assert min(dy) > 0 and np.mean(dy) > 0.5
    assert 0.1 < np.mean(moved) < 2.0          # the same skull, another convention: not another reading


def test_labels_is_the_old_name_of_site(pair):
    old = Detector(backend="onnxruntime", labels="challenge")
    assert old.labels == "challenge" and np.array_equal(old(IMGS[0]).xy, pair[1](IMGS[0]).xy)
    with pytest.raises(ModelError, match="old name of site="):
        Detector(backend="onnxruntime", labels="challenge", site="challenge")


def test_unknown_convention_or_no_local_stage_refused_with_the_choices():
    with pytest.raises(ModelError, match=r"site='nope'.*consensus, challenge"):
        Detector(backend="onnxruntime", site="nope")
    with pytest.raises(ModelError, match=r"site='nope'.*consensus, challenge"):
        Detector(backend="onnxruntime", labels="nope")
    with pytest.raises(ModelError, match="local_stage=False"):
        Detector(backend="onnxruntime", site="challenge", local_stage=False)


def _profile_on(base, shift=(0.0, 0.02)):
    """A profile fitted behind ``base``'s local stage, menton planted ``shift`` S-N lengths off."""
    rng = np.random.default_rng(3)
    pred = np.stack([ISBI19_MEAN + rng.normal(0, 3, ISBI19_MEAN.shape) for _ in range(8)])
    truth = pred.copy()
    sn = np.linalg.norm(pred[:, 1] - pred[:, 0], axis=1)
    truth[:, MENTON] += np.asarray(shift) * sn[:, None]
    return fit_site("clinic", ISBI19.id, ISBI19.names, pred, truth, local_stage=base)



def test_a_site_learnt_on_a_convention_follows_its_local_stage(tmp_path, pair):
    prof = _profile_on("challenge")
    assert prof.local_stage == "challenge" and prof.label == "site:clinic" and prof.moves
    back = SiteProfile.load(prof.save(tmp_path / "clinic.json"))
    assert back.local_stage == "challenge"
    det = Detector(backend="onnxruntime", site=tmp_path / "clinic.json")
    assert det.local.path.name == "isbi19_default_int8.challenge.local.onnx" and det.labels == "site:clinic"
    res, ref = det(IMGS[0]), pair[1](IMGS[0])
    assert res.labels == "site:clinic"
    assert np.allclose(res.xy, ref.xy + back.displacements(ref.xy), atol=1e-6)   # the challenge reading, moved
    assert Detector(backend="onnxruntime", site=_profile_on(None)).local.path.name == "isbi19_default_int8.local.onnx"


def test_a_site_on_a_convention_the_model_lacks_or_a_malformed_one_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no local stage for 'other'.*consensus, challenge"):
        Detector(backend="onnxruntime", site=_profile_on("other"))
    d = _profile_on("challenge").to_dict()
    d["local_stage"] = "../elsewhere"
    with pytest.raises(SiteError, match="not a convention's name"):
        SiteProfile.from_dict(d)
    old = _profile_on(None).to_dict()
    old.pop("local_stage")                      # a profile written before conventions were sites
    assert SiteProfile.from_dict(old).local_stage is None


def test_cli_predict_takes_a_convention_as_site(tmp_path):
    from cephalo.cli import main

    want = Detector(backend="onnxruntime", site="challenge")(IMGS[0]).xy
    for flag in ("--site", "--labels"):
        out = tmp_path / flag.strip("-")
        r = CliRunner().invoke(main, ["predict", str(IMGS[0]), "--backend", "onnxruntime", flag, "challenge",
                                      "--out", str(out)])
        assert r.exit_code in (0, 3), r.output
        rec = json.loads(next(out.glob("*.json")).read_text())
        assert rec["labels"] == "challenge"        # a clinic mixing conventions can tell the records apart
        got = np.array([[p["x"], p["y"]] for p in rec["landmarks"]])
        assert np.allclose(got, want, atol=0.05)
    for flag in ("--site", "--labels"):       # a usage error, before any image is read
        bad = CliRunner().invoke(main, ["predict", str(IMGS[0]), flag, "nope"])
        assert bad.exit_code == 2 and "'nope'" in bad.output and "consensus, challenge" in bad.output
    missing = CliRunner().invoke(main, ["predict", str(IMGS[0]), "--site", str(tmp_path / "gone.json")])
    assert missing.exit_code == 2 and "gone.json" in missing.output


def test_cli_adapt_on_a_convention_names_it_and_predict_follows(tmp_path):
    """``adapt --base challenge`` reads the clinic's images through the challenge local stage, and the profile it
    writes brings that local stage back with it: ``predict --site`` needs nothing else."""
    import shutil

    from cephalo.cli import main

    data = tmp_path / "clinic"
    shutil.copytree(ISBI_FIX, data)
    site = tmp_path / "clinic.json"
    r = CliRunner().invoke(main, ["adapt", "--data", str(data), "--out", str(site), "--backend", "onnxruntime",
                                  "--base", "challenge"])
    assert r.exit_code == 0, r.output
    prof = SiteProfile.load(site)
    assert prof.local_stage == "challenge"
    det = Detector(backend="onnxruntime", site=prof)
    assert det.local.path.name == "isbi19_default_int8.challenge.local.onnx"
    r = CliRunner().invoke(main, ["predict", str(IMGS[0]), "--site", str(site), "--backend", "onnxruntime"])
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["labels"] == "site:clinic"
    assert np.allclose([[p["x"], p["y"]] for p in rec["landmarks"]], det(IMGS[0]).xy, atol=0.05)
    r = CliRunner().invoke(main, ["adapt", "--data", str(data), "--out", str(tmp_path / "y.json"),
                                  "--backend", "onnxruntime", "--base", str(site)])
    assert r.exit_code == 1 and "not on another site's" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["adapt", "--data", str(data), "--out", str(tmp_path / "z.json"),
                                  "--base", "challenge", "--labels", "consensus2"])
    assert r.exit_code == 2 and "old name of --base" in r.output


def test_a_model_alone_runs_without_a_local_stage(tmp_path):
    """A first stage copied without its local stage: found missing, read by the first stage alone, said so by the
    Detector's info."""
    import shutil

    alone = tmp_path / "alone.onnx"
    shutil.copy(MODELS_DIR / DEFAULT_MODEL, alone)
    det = Detector(alone, backend="onnxruntime")
    assert det.local is None and det.info["local_stage"] is None
    assert local_stage_conventions(alone) == []
    for name in ("alone.a.b.local.onnx", "alone..local.onnx", "alone.challenge.local.onnx"):   # only a plain name
        (tmp_path / name).write_bytes(b"")
    assert local_stage_conventions(alone) == ["challenge"]
    (tmp_path / "alone.local.onnx").write_bytes(b"")
    assert local_stage_conventions(alone) == ["consensus", "challenge"]
    res = det(IMGS[0])
    assert res.is_cephalogram and len(res.xy) == 19
