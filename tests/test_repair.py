"""Repair (issue 33): an implausible landmark is read again where the other landmarks put it."""
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk import Detector
from sdk.quality import COND_Z, shape_model
from sdk.repair import ReadingFrame, repair_points
from sdk.schemas import ISBI19
from train.datasets import load_folder


@pytest.fixture(scope="module")
def det():
    return Detector(backend="onnxruntime")


@pytest.fixture(scope="module")
def samples():
    return load_folder(ISBI_FIX, ISBI19, annotators=("senior", "junior"))


@pytest.mark.parametrize("name", ["porion", "gonion", "soft_tissue_pogonion", "nasion"])
def test_a_point_moved_30_mm_comes_back(det, samples, name):
    s = samples[0]
    k = ISBI19.names.index(name)
    x, lb, loaded = det.preprocess(s.image)
    xy = det(s.image).xy
    model = shape_model(ISBI19.id, ISBI19.names)
    moved = xy.copy()
    moved[k] += np.array([0.6, -0.8]) * 30.0 / s.spacing          # 30 mm up and forward
    implausible = model.conditional_z(moved) > COND_Z
    assert implausible[k]
    frame = ReadingFrame(loaded.gray, lb, loaded.reduction, np.zeros(2))
    rep = repair_points(moved, implausible, det.local, frame, model, COND_Z)
    assert rep.repaired[k]
    assert np.linalg.norm(rep.xy[k] - s.points[k]) * s.spacing < 2.0            # back within 2 mm of the labels
    others = np.arange(len(xy)) != k
    assert np.array_equal(rep.xy[others & ~rep.repaired], moved[others & ~rep.repaired])   # good points stay


def test_a_correct_image_is_unchanged_bit_for_bit(det, samples):
    plain = Detector(backend="onnxruntime", repair=False)
    for s in samples[:4]:
        a, b = det(s.image), plain(s.image)
        assert not any(a.repaired) and np.array_equal(a.xy, b.xy) and a.point_flags == b.point_flags
        assert "repaired" not in json.dumps(a.to_dict())


def test_a_non_cephalogram_is_not_repaired_into_a_skull(det):
    noise = np.random.default_rng(0).integers(0, 256, (600, 500), dtype=np.uint8)
    res = det(cv2.GaussianBlur(noise, (0, 0), 3))
    assert res.status == "flagged" and not res.is_cephalogram and not any(res.repaired)


def test_the_record_csv_and_overlay_show_a_repair(det, samples, tmp_path):
    from cephalo.run import write_csv

    s = samples[0]
    res = det(s.image)
    first = res.xy.copy()
    first[3] += 200.0
    fixed = tuple(i == 3 for i in range(len(res.names)))
    rep = replace(res, repaired=fixed, first_reading=first)
    lm = rep.to_dict()["landmarks"]
    assert lm[3]["repaired"] is True and lm[3]["first_reading"]["x"] == round(float(first[3, 0]), 3)
    assert "repaired" not in lm[2]
    assert any("repaired" in m and res.names[3] in m for m in rep.messages())
    write_csv(rep, tmp_path / "r.csv")
    rows = [r.split(",") for r in (tmp_path / "r.csv").read_text().splitlines()]
    col = rows[0].index("repaired")
    assert rows[4][col] == "yes" and rows[3][col] == "" and float(rows[4][col + 1]) == pytest.approx(first[3, 0], abs=0.006)
    over = det.draw(s.image, rep)
    plain = det.draw(s.image, res)
    assert over.shape == plain.shape and not np.array_equal(over, plain)


def test_the_detector_repairs_a_gross_first_reading(det, samples):
    """Through the Detector's own steps: a reading with porion 30 mm off is repaired, the rest untouched, and
    the flags recomputed for the repaired configuration."""
    s = samples[1]
    k = ISBI19.names.index("porion")
    x, lb, loaded = det.preprocess(s.image)
    reading = det._read(det.run_network(x[None])[0], lb, loaded, None)
    good = det._assess(reading).result
    moved = reading.result.xy.copy()
    moved[k] += np.array([-1.0, 0.0]) * 30.0 / s.spacing
    bad = det._assess(reading.with_result(xy=moved))
    assert bad.result.point_flags[k] == "implausible position"
    fixed = det._repaired(bad).result
    assert fixed.repaired[k] and sum(fixed.repaired) == 1 and np.array_equal(fixed.first_reading, moved)
    assert np.linalg.norm(fixed.xy[k] - good.xy[k]) * s.spacing < 2.0
    assert fixed.point_flags[k] != "implausible position"
    others = np.arange(len(moved)) != k
    assert np.array_equal(fixed.xy[others], moved[others])
    off = Detector(backend="onnxruntime", repair=False)
    assert not off.repair
