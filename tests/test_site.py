"""Site profiles (issue 32): a clinic's conventions learnt from its labelled images and applied by the Detector."""
import json
import re
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from sdk import Detector, SiteError, SiteProfile, fit_site
from sdk.schemas import ISBI19
from sdk.site import MAX_OFFSET_SN, frames, to_frame
from train.datasets import load_folder

PORION = ISBI19.names.index("porion")
MENTON = ISBI19.names.index("menton")


@pytest.fixture(scope="module")
def readings():
    samples = load_folder(ISBI_FIX, ISBI19)
    det = Detector(backend="onnxruntime")
    return samples, np.stack([det(s.image).xy for s in samples])


def _planted(pred, planted_sn, noise_px=0.0, seed=0):
    """Labels that differ from ``pred`` by ``planted_sn`` (K, 2) in each image's S-N frame, plus noise."""
    _, rot, length = frames(pred, ISBI19.names)
    shift = np.einsum("nji,kj->nki", rot, planted_sn) * length[:, None, None]
    return pred + shift + np.random.default_rng(seed).normal(0, noise_px, pred.shape)


def test_a_planted_convention_is_recovered_and_applied(readings):
    samples, pred = readings
    planted = np.zeros((ISBI19.k, 2))
    planted[PORION] = (-0.03, -0.06)      # porion a few mm up and back: the ear rod's ring
    planted[MENTON] = (0.02, 0.0)
    truth = _planted(pred, planted, noise_px=1.0)
    prof = fit_site("clinic", ISBI19.id, ISBI19.names, pred, truth, [s.spacing for s in samples])
    assert np.abs(prof.offsets[PORION] - planted[PORION]).max() < 0.01
    assert np.abs(prof.offsets[MENTON] - planted[MENTON]).max() < 0.01
    moved = np.stack([prof.apply(p) for p in pred])
    assert np.linalg.norm(moved - truth, axis=2)[:, PORION].mean() < 3.0          # within the planted noise
    assert np.linalg.norm(pred - truth, axis=2)[:, PORION].mean() > 8.0            # before: far off
    r = prof.report
    assert r["after_cv"]["mre_mm"] < r["before"]["mre_mm"] and r["images"] == len(samples)


def test_offsets_follow_the_skull_mirrored_and_scaled(readings):
    """The same convention on a mirrored, half-size reading moves the point the mirrored, halved way."""
    _, pred = readings
    planted = np.zeros((ISBI19.k, 2))
    planted[PORION] = (-0.03, -0.06)
    prof = SiteProfile("c", ISBI19.id, ISBI19.names, planted, 5)
    p = pred[0]
    d = prof.displacements(p)
    mirrored = np.c_[1000.0 - p[:, 0], p[:, 1]] * 0.5
    dm = prof.displacements(mirrored)
    assert np.allclose(dm[PORION], [-d[PORION, 0] * 0.5, d[PORION, 1] * 0.5], atol=1e-9)


def test_profile_round_trip_and_detector(tmp_path, readings):
    samples, pred = readings
    planted = np.zeros((ISBI19.k, 2))
    planted[PORION] = (-0.03, -0.06)
    prof = fit_site("clinic_a", ISBI19.id, ISBI19.names, pred, _planted(pred, planted, 0.5))
    path = prof.save(tmp_path / "clinic_a.json")
    back = SiteProfile.load(path)
    assert back.name == "clinic_a" and np.allclose(back.offsets, prof.offsets, atol=1e-6)
    plain = Detector(backend="onnxruntime")(samples[0].image)
    res = Detector(backend="onnxruntime", site=path)(samples[0].image)
    assert res.labels == "site:clinic_a" and json.loads(res.to_json())["labels"] == "site:clinic_a"
    assert np.allclose(res.xy, back.apply(plain.xy))
    assert res.point_flags == plain.point_flags                     # the flags judge the model's reading
    others = [k for k in range(ISBI19.k) if np.abs(back.offsets[k]).max() == 0]
    assert np.array_equal(res.xy[others], plain.xy[others])
    rec = json.loads(res.to_json())
    assert rec["landmarks"][PORION]["site_placed"] == "offset" and rec["measurements"]["FMA"]["porion"] == "site:clinic_a offset"
    assert all("site_placed" not in rec["landmarks"][k] for k in others)


def test_refusals(tmp_path, readings):
    _, pred = readings
    with pytest.raises(SiteError, match="at least 5"):
        fit_site("x", ISBI19.id, ISBI19.names, pred[:4], pred[:4])
    swapped = pred.copy()
    swapped[:, [PORION, MENTON]] = swapped[:, [MENTON, PORION]]    # two columns swapped by mistake
    with pytest.raises(SiteError, match="porion.*mislabelled") as e:
        fit_site("x", ISBI19.id, ISBI19.names, pred, swapped)
    from sdk.site import frames, to_frame

    _, rot, length = frames(pred, ISBI19.names)
    far = np.linalg.norm(np.median(to_frame(swapped - pred, rot, length), axis=0), axis=1)
    said = [f"{n} ({far[k] * 100:.0f}% of S-N)" for k, n in ((PORION, "porion"), (MENTON, "menton"))]
    assert str(e.value).startswith(f"the labels of {said[0]}, {said[1]} lie far beyond") and far[PORION] > 0.5
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SiteError, match="bad.json"):
        SiteProfile.load(bad)
    other = SiteProfile("x", "aariz29", ISBI19.names, np.zeros((ISBI19.k, 2)), 5).save(tmp_path / "aariz.json")
    with pytest.raises(SiteError, match="aariz29"):
        Detector(backend="onnxruntime", site=other)
    assert MAX_OFFSET_SN < 0.5


def test_frame_is_anatomical(readings):
    """Frame units: S-N has length 1 along the first axis; the chin lies on the positive side of the second."""
    _, pred = readings
    _, rot, length = frames(pred, ISBI19.names)
    rel = to_frame(pred - pred[:, [0]], rot, length)
    assert np.allclose(rel[:, 1], [1.0, 0.0], atol=1e-9) and (rel[:, MENTON, 1] > 0).all()


def test_cli_adapt_then_predict_with_the_site(tmp_path):
    from cephalo.cli import main

    data = tmp_path / "clinic"
    shutil.copytree(ISBI_FIX, data)
    site = tmp_path / "clinic.json"
    r = CliRunner().invoke(main, ["adapt", "--data", str(data), "--out", str(site), "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    assert "cross-validated" in r.output and site.is_file()
    img = next((data / "images").glob("*.jpg"))
    r = CliRunner().invoke(main, ["predict", str(img), "--site", str(site), "--backend", "onnxruntime"])
    assert json.loads(r.stdout.splitlines()[0])["labels"] == "site:clinic", r.output
    few = tmp_path / "few"
    shutil.copytree(ISBI_FIX, few)
    (few / "splits.csv").write_text("image,split\n001.jpg,a\n002.jpg,a\n003.jpg,a\n")
    r = CliRunner().invoke(main, ["adapt", "--data", str(few), "--out", str(tmp_path / "x.json"), "--split", "a"])
    assert r.exit_code == 1 and "at least 5" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = CliRunner().invoke(main, ["predict", str(img), "--site", str(bad)])
    assert r.exit_code == 2 and "not a cephalo site profile" in r.output


@pytest.fixture(scope="module")
def ear_rod_clinic(readings):
    """The fixture images as a clinic that marks machine porion: an ear rod planted in each (as an X-ray shows
    it), porion labelled on the ring's top, the other landmarks where the model reads them."""
    from benchmarks.site_adapt import ear_rod_site
    from sdk.image_io import load_image

    samples, pred = readings
    mm = np.array([s.spacing for s in samples])
    grays = [(load_image(s.image).gray, 1) for s in samples]
    return grays, mm, [ear_rod_site(grays, pred, ISBI19.names, mm, seed=s) for s in (0, 1)]


def test_a_site_look_finds_machine_porion_on_the_ear_rod(ear_rod_clinic, tmp_path):
    grays, mm, [(fit_grays, fit_truth), (new_grays, new_truth)] = ear_rod_clinic
    det = Detector(backend="onnxruntime")
    pred = np.stack([det(g).xy for g, _ in fit_grays])
    prof = fit_site("rods", ISBI19.id, ISBI19.names, pred, fit_truth, mm, grays=fit_grays)
    assert list(prof.looks) == ["porion"], prof.report["looks"]
    assert prof.report["porion"] == "machine"             # what adapt tells the clinic
    loo = prof.report["looks"]["porion"]
    assert loo["with_look_mm"] < 0.55 * loo["offset_only_mm"]
    back = SiteProfile.load(prof.save(tmp_path / "rods.json"))
    assert list(back.looks) == ["porion"] and np.allclose(back.looks["porion"].patch, prof.looks["porion"].patch, atol=1e-3)
    # the same rods placed anew (another patient each): the look follows the ring, the offset alone cannot
    site_det = Detector(backend="onnxruntime", site=back)
    off_err, look_err = [], []
    for (g, _), t in zip(new_grays, new_truth):
        plain, res = det(g), site_det(g)
        off_err.append(np.linalg.norm(back.apply(plain.xy)[PORION] - t[PORION]))
        look_err.append(np.linalg.norm(res.xy[PORION] - t[PORION]))
        assert res.labels == "site:rods"
        # apply() with the image is place()'s points: the look matched in that image, at its decode reduction
        with_look = back.apply(plain.xy, g, 1)
        assert np.array_equal(with_look, back.place(plain.xy, g, 1)[0])
        assert not np.allclose(with_look[PORION], back.apply(plain.xy)[PORION])
        half = cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        assert np.linalg.norm(back.apply(plain.xy, half, 2)[PORION] - with_look[PORION]) < 3.0
    # the record says the site placed porion on its look, and FH-based measurements say which porion they used
    rec = json.loads(res.to_json())
    assert rec["landmarks"][PORION]["site_placed"] == "look"
    assert rec["measurements"]["FMA"]["porion"] == "site:rods look"
    assert json.loads(plain.to_json())["measurements"]["FMA"]["porion"] == "anatomical"
    assert "site_placed" not in json.loads(plain.to_json())["landmarks"][PORION]
    px = 1.0 / mm[0]          # pixels per mm on the fixtures
    assert np.mean(look_err) < 0.6 * np.mean(off_err) and np.mean(look_err) < 1.5 * px
    # an image read mirrored: the site's looks (of its machine's images as given) are not matched, and it says so
    flipped = np.ascontiguousarray(new_grays[0][0][:, ::-1])
    res, plain = site_det(flipped), det(flipped)
    assert res.view == "mirrored" and any("looks were not matched" in n for n in res.notes)
    assert np.allclose(res.xy, back.apply(plain.xy))


def test_no_look_where_the_image_shows_no_repeatable_structure(readings):
    """The fixture images with labels near the model's reading: anatomy the model reads well gets no look."""
    from sdk.image_io import load_image

    samples, pred = readings
    grays = [(load_image(s.image).gray, 1) for s in samples]
    planted = np.zeros((ISBI19.k, 2))
    planted[MENTON] = (0.02, 0.0)
    prof = fit_site("plain", ISBI19.id, ISBI19.names, pred, _planted(pred, planted, noise_px=1.0),
                    [s.spacing for s in samples], grays=grays)
    assert prof.looks == {} and set(prof.report["looks"]) == set(ISBI19.names)
    assert prof.report["porion"] == "anatomical"
    planted[PORION] = (0.0, 0.08)                          # ~5.6 mm down, and no ring to see: not the meatus
    far = fit_site("far", ISBI19.id, ISBI19.names, pred, _planted(pred, planted, noise_px=1.0),
                   [s.spacing for s in samples])
    assert far.report["porion"] == "other"
    planted[PORION] = (0.0, 0.025)                         # ~1.8 mm (of a 70 mm S-N): within the 3 mm allowed
    near = fit_site("near", ISBI19.id, ISBI19.names, pred, _planted(pred, planted, noise_px=1.0),
                    [s.spacing for s in samples])
    assert near.report["porion"] == "anatomical"
    img = grays[0][0]
    assert np.array_equal(prof.apply(pred[0], img, 1), prof.apply(pred[0]))


def test_cli_adapt_learns_the_ear_rods_look_on_full_size_images(tmp_path, ear_rod_clinic):
    """End to end on files: the ear-rod clinic at ISBI's full size (0.1 mm/px), PNGs in the ISBI layout; ``adapt``
    finds the rods in the clinic's images and says the clinic marks machine porion (the profile places porion on
    the rods' top; that supersedes a look of it), and ``predict --site`` puts porion on the ring of a new image."""
    import cv2
    from click.testing import CliRunner

    from cephalo.cli import main

    grays, mm, [(fit_grays, fit_truth), (new_grays, new_truth)] = ear_rod_clinic
    up = 4                                              # fixtures are ISBI's images at 1/4
    data = tmp_path / "clinic"
    (data / "images").mkdir(parents=True)
    rows, names = [], [f"{n}_{a}" for n in ISBI19.names for a in "xy"]
    for i, ((g, _), t) in enumerate(zip(fit_grays, fit_truth)):
        cv2.imwrite(str(data / "images" / f"{i:03d}.png"), cv2.resize(g, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC))
        rows.append(f"{i:03d}.png," + ",".join(f"{v:.3f}" for v in (t * up + (up - 1) / 2).ravel()))
    (data / "senior.csv").write_text("image," + ",".join(names) + "\n" + "\n".join(rows) + "\n")
    (data / "spacing.csv").write_text("image,spacing\n" + "".join(f"{i:03d}.png,0.1\n" for i in range(len(rows))))
    site = tmp_path / "rods.json"
    r = CliRunner().invoke(main, ["adapt", "--data", str(data), "--out", str(site), "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    prof = SiteProfile.load(site)
    assert "marks machine porion (the ear rods' top)" in r.output
    assert re.search(r"ear rods found in [6-8] of 8 images", r.output), r.output
    assert prof.porion == "machine" and "porion" not in prof.looks, r.output
    new = tmp_path / "new.png"
    cv2.imwrite(str(new), cv2.resize(new_grays[0][0], None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC))
    r = CliRunner().invoke(main, ["predict", str(new), "--site", str(site), "--backend", "onnxruntime"])
    rec = json.loads(r.stdout.splitlines()[0])
    porion = np.array([rec["landmarks"][PORION]["x"], rec["landmarks"][PORION]["y"]])
    assert rec["landmarks"][PORION]["site_placed"] == "machine" and rec["measurements"]["FMA"]["porion"] == "site:rods machine"
    assert np.linalg.norm(porion - (new_truth[0][PORION] * up + (up - 1) / 2)) * 0.1 < 1.5, rec["landmarks"][PORION]


def test_the_sites_cephalostat_gives_the_ruler_and_magnification(tmp_path, readings):
    """A profile states its machine's ruler and magnification once; the Detector takes them unless given its own,
    and a profile with an impossible value is refused naming the file."""
    samples, _ = readings
    prof = SiteProfile("clinic", ISBI19.id, ISBI19.names, np.zeros((ISBI19.k, 2)), 5, ruler_mm=1.84,
                       magnification=1.1)
    path = prof.save(tmp_path / "clinic.json")
    back = SiteProfile.load(path)
    assert (back.ruler_mm, back.magnification) == (1.84, 1.1)
    det = Detector(backend="onnxruntime", site=path)
    assert (det.ruler_mm, det.magnification) == (1.84, 1.1)
    res = det(samples[0].image)
    assert res.spacing_source == "ruler" and res.ruler["tick_mm"] == 1.84
    assert Detector(backend="onnxruntime", site=path, ruler_mm=2.0).ruler_mm == 2.0
    assert Detector(backend="onnxruntime").ruler_mm is None
    d = json.loads(path.read_text())
    for key, bad in (("ruler_mm", 0), ("magnification", 3.0), ("ruler_mm", "1")):
        (tmp_path / "bad.json").write_text(json.dumps({**d, key: bad}))
        with pytest.raises(SiteError, match=f"bad.json.*{key}"):
            SiteProfile.load(tmp_path / "bad.json")
    old = {k: v for k, v in d.items() if k not in ("ruler_mm", "magnification")}     # a profile from before
    assert SiteProfile.from_dict(old).ruler_mm is None


def test_cli_adapt_keeps_the_ruler_and_checks_it_against_the_labels(tmp_path):
    from cephalo.cli import main

    data = tmp_path / "clinic"
    shutil.copytree(ISBI_FIX, data)
    site = tmp_path / "clinic.json"
    args = ["adapt", "--data", str(data), "--out", str(site), "--backend", "onnxruntime"]
    r = CliRunner().invoke(main, args + ["--ruler-mm", "1.84", "--magnification", "1.1"])
    assert r.exit_code == 0, r.output
    prof = SiteProfile.load(site)
    check = prof.report["ruler"]
    assert (prof.ruler_mm, prof.magnification) == (1.84, 1.1) and check["found"] >= check["images"] - 1
    assert abs(check["spacing_ratio_median"] - 1) < 0.03 and "differ" not in r.output
    r = CliRunner().invoke(main, args + ["--ruler-mm", "3.68"])        # twice the true pitch: said
    assert r.exit_code == 0 and "differ by +100%" in r.output, r.output
    assert re.search(r"--ruler-mm 1\.8[34]\?", r.output), r.output                 # what it should be
    assert abs(json.loads(site.read_text())["report"]["ruler"]["suggested_tick_mm"] - 1.84) < 0.02
    for bad in ("nan", "inf", "-1"):
        r = CliRunner().invoke(main, args + ["--ruler-mm", bad])
        assert r.exit_code == 2 and "--ruler-mm" in r.output, (bad, r.output)
    img = next((data / "images").glob("*.jpg"))
    r = CliRunner().invoke(main, ["predict", str(img), "--site", str(site), "--backend", "onnxruntime"])
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["spacing_source"] == "ruler" and rec["ruler"]["tick_mm"] == 3.68, r.output


def test_a_site_whose_labels_have_gaps_still_adapts(tmp_path):
    """Two blank cells (001's porion, 152's menton) are unlabelled points: adapt says how many per landmark, leaves
    them out of their offsets and scores, and writes a profile; a point outside its image is refused by name."""
    import csv as csvmod

    from conftest import blank_cells

    d, rows, head = blank_cells(tmp_path, {1: "porion", 6: "menton"})
    site = tmp_path / "gaps.json"
    r = CliRunner().invoke(main_cli(), ["adapt", "--data", str(d), "--out", str(site), "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    assert "unlabelled points (blank cells)" in r.output and "porion 1" in r.output and "menton 1" in r.output
    assert "all images: no --split" in r.output and "from " in r.output          # the defaults said
    prof = SiteProfile.load(site)
    assert prof.report["missing_labels"] == {"porion": 1, "menton": 1} and np.isfinite(prof.offsets).all()
    rows[2][head.index("pogonion_x")] = "5000"
    with open(d / "senior.csv", "w", newline="") as f:
        csvmod.writer(f).writerows(rows)
    r = CliRunner().invoke(main_cli(), ["adapt", "--data", str(d), "--out", str(site), "--backend", "onnxruntime"])
    assert r.exit_code != 0 and "002.jpg: pogonion at (5000.0" in r.output and "outside its 484x600 image" in r.output


def main_cli():
    from cephalo.cli import main

    return main


def test_a_profile_is_checked_when_loaded(tmp_path):
    """A profile edited by hand, corrupted or from elsewhere is refused by name with the bounds adapt writes under:
    an offset of 1e9 or of half S-N, a broken look, a JSON nested too deep. The CLI exits 2 naming the file."""
    from cephalo.cli import main

    good = SiteProfile("clinic", ISBI19.id, ISBI19.names, np.zeros((ISBI19.k, 2)), 5).save(tmp_path / "clinic.json")
    d = json.loads(good.read_text())
    assert SiteProfile.load(good).name == "clinic"
    for k, off, what in ((0, 1e9, "sella"), (ISBI19.names.index("pogonion"), 0.5, "pogonion")):
        bad = {**d, "offsets_sn": [[off, 0.0] if i == k else [0.0, 0.0] for i in range(ISBI19.k)]}
        (tmp_path / "edited.json").write_text(json.dumps(bad))
        with pytest.raises(SiteError, match=f"edited.json.*{what}.*beyond any convention"):
            SiteProfile.load(tmp_path / "edited.json")
    just = {**d, "offsets_sn": [[0.9 * MAX_OFFSET_SN, 0.0]] + [[0.0, 0.0]] * (ISBI19.k - 1)}
    (tmp_path / "edge.json").write_text(json.dumps(just))
    assert SiteProfile.load(tmp_path / "edge.json").offsets[0, 0] == pytest.approx(0.9 * MAX_OFFSET_SN)
    cases = {"nested.json": "[" * 100000 + "]" * 100000,
             "look.json": json.dumps({**d, "looks": {"sella": {"patch": [[0.0]], "min_score": 0.5}}}),
             "names.json": json.dumps({**d, "names": "sella"}),
             "images.json": json.dumps({**d, "images": -3})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SiteError, match=name):
            SiteProfile.load(tmp_path / name)
    img = next((ISBI_FIX / "images").glob("*.jpg"))
    for name in ("edited.json", "nested.json"):
        r = CliRunner().invoke(main, ["predict", str(img), "--site", str(tmp_path / name), "--backend", "onnxruntime"])
        assert r.exit_code == 2 and name in r.output and "Traceback" not in r.output, r.output


def test_an_off_ruler_pitch_suggests_the_usual_one():
    """The issue's case: 1.84 given for a 1 mm ruler reads the spacing 1.837x the labels': 1 mm is suggested."""
    from train.adapt import suggested_pitch

    assert suggested_pitch(1.84 / 1.837) == 1.0 and suggested_pitch(2.0 / 0.8) == 2.5
    assert suggested_pitch(1.84) == 1.84 and suggested_pitch(0.7712) == 0.77


def test_the_overlay_names_the_site(tmp_path, readings, monkeypatch):
    """The overlay's legend says whose conventions the points follow: the site's name for a site profile."""
    import sdk.draw

    samples, pred = readings
    planted = np.zeros((ISBI19.k, 2))
    planted[PORION] = (-0.03, -0.06)
    path = fit_site("clinic_b", ISBI19.id, ISBI19.names, pred, _planted(pred, planted, 0.5)).save(tmp_path / "b.json")
    seen = {}
    real = sdk.draw.draw_landmarks
    monkeypatch.setattr(sdk.draw, "draw_landmarks", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    for site, label in ((path, "labels: site:clinic_b"), (None, "labels: consensus")):
        det = Detector(backend="onnxruntime", site=site)
        det.draw(samples[0].image, det(samples[0].image))
        assert label in [t for t, _ in seen["measurements"]]


def _profile_dict(**changes):
    d = SiteProfile("clinic", ISBI19.id, ISBI19.names, np.zeros((ISBI19.k, 2)), 5, gate=0.5,
                    report={"images": 5}, local_stage="challenge", porion="machine",
                    machine_offset=(0.01, -0.02)).to_dict()
    d.update(changes)
    return d


def test_a_profile_round_trips_every_field():
    back = SiteProfile.from_dict(_profile_dict())
    assert (back.local_stage, back.gate, back.report, back.porion, back.machine_offset) == (
        "challenge", 0.5, {"images": 5}, "machine", (0.01, -0.02))
    assert back.offsets.dtype == np.float64 and back.images == 5
    old = {k: v for k, v in _profile_dict().items() if k not in ("looks", "report", "gate", "machine_offset_sn",
                                                                  "local_stage")}
    plain = SiteProfile.from_dict(old)             # a profile written before these fields: their defaults
    assert (plain.looks, plain.report, plain.gate, plain.machine_offset, plain.local_stage) == ({}, {}, 0.0,
                                                                                                 (0.0, 0.0), None)


@pytest.mark.parametrize("changes, says", [
    ({"local_stage": "../x"}, "local_stage '../x' is not a convention's name"),
    ({"local_stage": 7}, "local_stage 7 is not a convention's name"),
    ({"ruler_mm": 0}, "ruler_mm"),
    ({"magnification": 3.0}, "magnification"),
    ({"porion": "bony"}, "porion 'bony' is not 'machine'"),
    ({"machine_offset_sn": [0.04, 0.04]}, "machine_offset_sn"),
    ({"machine_offset_sn": [0.0, 0.05]}, None),               # on the bound: accepted
    ({"machine_offset_sn": [0.0]}, "machine_offset_sn"),
    ({"machine_offset_sn": [float("nan"), 0.0]}, "machine_offset_sn"),
    ({"offsets_sn": [[0.0, 0.0]] * 3}, "offsets must be 19 finite"),
    ({"offsets_sn": [[float("inf"), 0.0]] * 19}, "offsets must be 19 finite"),
    ({"names": ["sella"] * 19}, "named twice"),
    ({"looks": {"chin": {"patch": [[0.0] * 49] * 49, "min_score": 0.5}}}, "does not name: ['chin']"),
    ({"looks": {"sella": {"patch": [[0.0] * 49] * 49, "min_score": 1.5}}}, "threshold outside [-1, 1]"),
    ({"looks": {"sella": {"patch": [[0.0] * 48] * 49, "min_score": 0.5}}},
     "a look is a finite 49-pixel square patch, got (49, 48)"),
    ({"looks": {"sella": {"patch": [[0.0] * 49] * 48 + [[float("nan")] * 49], "min_score": 0.5}}},
     "a look is a finite 49-pixel square patch, got (49, 49)"),
    ({"images": -1}, "images -1 and gate"),
    ({"images": 0}, None),                                     # a convention alone
    ({"gate": 10.5}, "gate 10.5"),
    ({"gate": 10.0}, None),
    ({"gate": "x"}, "malformed (ValueError"),
    ({"report": [1, 2]}, "malformed (TypeError"),
])
def test_a_malformed_profile_is_refused_by_what_is_wrong(changes, says):
    d = _profile_dict(**changes)
    if says is None:
        SiteProfile.from_dict(d)
        return
    with pytest.raises(SiteError) as e:
        SiteProfile.from_dict(d, "site profile x.json")
    assert str(e.value).startswith("site profile x.json: ") and says in str(e.value), str(e.value)


def test_the_offset_bound_says_which_and_how_far():
    from sdk.site import check_offsets

    off = np.zeros((ISBI19.k, 2))
    off[0] = (MAX_OFFSET_SN, 0.0)                                  # on the bound: accepted
    check_offsets(off, ISBI19.names)
    off[1] = (0.3, 0.4)                                            # half of S-N
    off[2] = (0, 0.25)
    with pytest.raises(SiteError, match=r"the offsets of nasion \(50% of S-N\), orbitale \(25% of S-N\) lie beyond"):
        check_offsets(off.tolist(), ISBI19.names)


def test_a_look_is_stored_to_a_thousandth_and_read_as_float32():
    from sdk.site_look import HALF, Look

    rng = np.random.default_rng(0)
    patch = rng.normal(0, 1, (2 * HALF + 1, 2 * HALF + 1)).astype(np.float32)
    d = json.loads(json.dumps(Look(patch, 0.25).to_dict()))
    assert d["min_score"] == 0.25 and np.array_equal(d["patch"], np.round(patch, 3))
    back = Look.from_dict(d)
    assert back.patch.dtype == np.float32 and np.abs(back.patch - patch).max() <= 5e-4 and back.min_score == 0.25


def test_site_offsets_by_their_rule():
    """Each landmark's own trimmed mean (an outlying image trimmed away), shrunk towards zero by its own standard
    error: a convention every image shows exactly is kept whole, noise around nothing moves by less than its
    noise; two images are averaged, not trimmed to nothing; a landmark with gaps leaves the others as they were."""
    from sdk.site import SHRINK, TRIM, site_offsets

    rng = np.random.default_rng(5)
    n = 10
    rel = np.zeros((n, 3, 2))
    rel[:, 0] = (0.1, -0.02)
    rel[0, 0] = (1.0, 1.0)                                   # one image far off: trimmed
    rel[:, 1] = rng.normal(0, 0.01, (n, 2))                  # noise around nothing
    rel[:, 2] = (0.05, 0.0) + rng.normal(0, 0.01, (n, 2))    # a convention, noisy
    out = site_offsets(rel)
    assert TRIM * n >= 1 and np.allclose(out[0], (0.1, -0.02))

    def rule(r):
        m = len(r)
        k = max(1, int(TRIM * m)) if m > 2 else 0
        mean = np.sort(r, axis=0)[k:m - k].mean(axis=0)
        se = np.linalg.norm(1.2533 * 1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0) / np.sqrt(m))
        return mean, max(0.0, 1 - (SHRINK * se) ** 2 / (mean @ mean))

    for k, lo, hi in ((1, 0.0, 0.9), (2, 0.9, 1.0)):
        mean, shrink = rule(rel[:, k])
        assert lo < shrink < hi and np.allclose(out[k], mean * shrink), k
    assert np.linalg.norm(out[1]) < 0.005
    mean, shrink = rule(rel[:2, 0])
    assert np.allclose(mean, (0.55, 0.49)) and 0 < shrink < 1
    assert np.allclose(site_offsets(rel[:2, :1]), [mean * shrink])
    assert np.allclose(site_offsets(rel[1:3, :1]), [[0.1, -0.02]])
    gaps = rel.copy()
    gaps[3:, 1] = np.nan                                     # landmark 1 labelled on three images only
    assert np.allclose(site_offsets(gaps)[[0, 2]], out[[0, 2]])


def test_a_fitted_offset_beyond_a_convention_is_refused_by_name(readings):
    """Half the images mark porion one way and half another (two annotators' habits): the median is a plausible
    convention, but the fitted offset lies beyond what a convention moves, and the fit says which landmark."""
    _, pred = readings
    xs = [0.1, 0.1, 0.1, 0.1, 0.19, 0.5, 0.5, 0.5]            # median 0.145 of S-N; trimmed mean ~0.25
    assert len(xs) == len(pred)
    truth = pred.copy()
    for i, x in enumerate(xs):
        planted = np.zeros((ISBI19.k, 2))
        planted[PORION] = (x, 0.0)
        truth[i] = _planted(pred, planted)[i]
    with pytest.raises(SiteError, match=r"^the fitted site profile: .*porion \(2[0-9](\.[0-9])?% of S-N\)"):
        fit_site("two habits", ISBI19.id, ISBI19.names, pred, truth)
