import csv
import json
import shutil

import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk.errors import AnnotationError
from sdk.preprocess import Preprocessing
from sdk.schemas import AARIZ29, ISBI19
from train.data.cache import ImageCache
from train.data.readers import read_aariz, read_isbi, read_labelme, read_points_csv
from train.datasets import load_folder


def test_isbi_folder(fixture_samples):
    assert len(fixture_samples) == 8
    s = fixture_samples[0]
    assert s.points.shape == (19, 2) and s.spacing == pytest.approx(0.4)
    test1 = load_folder(ISBI_FIX, ISBI19, split=["test1"])
    assert [x.id for x in test1] == ["151", "152", "153"]


def test_annotator_mean():
    sen = read_points_csv(ISBI_FIX / "senior.csv", ISBI19)
    jun = read_points_csv(ISBI_FIX / "junior.csv", ISBI19)
    both = {s.id: s.points for s in read_isbi(ISBI_FIX, ISBI19, ("senior", "junior"), spacing=0.4)}
    assert np.allclose(both["001"], (sen["001.jpg"] + jun["001.jpg"]) / 2)


def _copy(tmp_path):
    d = tmp_path / "isbi"
    shutil.copytree(ISBI_FIX, d)
    return d


def _edit_csv(path, fn):
    rows = list(csv.reader(open(path, newline="")))
    rows = fn(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize("edit,match", [
    (lambda r: [[c for i, c in enumerate(row) if i not in (1, 2)] for row in r], "'sella' has no column"),
    (lambda r: r + [r[1]], "labelled twice"),
    (lambda r: [r[0], [r[1][0], "abc"] + r[1][2:]] + r[2:], "not a number"),
    (lambda r: [r[0], [r[1][0], ""] + r[1][2:]] + r[2:], "not a number"),
    (lambda r: [r[0], ["999.jpg"] + r[1][1:]] + r[2:], "does not exist"),
])
def test_malformed_csv(tmp_path, edit, match):
    d = _copy(tmp_path)
    _edit_csv(d / "senior.csv", edit)
    with pytest.raises(AnnotationError, match=match):
        read_isbi(d, ISBI19, spacing=0.4)


def test_point_outside_image_named_at_decode(tmp_path):
    d = _copy(tmp_path)
    _edit_csv(d / "senior.csv", lambda r: [r[0], [r[1][0], "5000"] + r[1][2:]] + r[2:])
    s = read_isbi(d, ISBI19, spacing=0.4)[0]
    with pytest.raises(AnnotationError, match="outside the 484x600 image"):
        ImageCache(tmp_path / "c", Preprocessing((128, 128))).get(s)


def test_unreadable_image_named(tmp_path):
    d = _copy(tmp_path)
    (d / "images" / "001.jpg").write_bytes(b"garbage")
    s = read_isbi(d, ISBI19, spacing=0.4)[0]
    with pytest.raises(Exception, match="001.jpg"):
        ImageCache(tmp_path / "c", Preprocessing((128, 128))).get(s)


def _labelme(tmp_path, pts, names, extra=()):
    shutil.copy(ISBI_FIX / "images" / "001.jpg", tmp_path / "001.jpg")
    shapes = [{"label": n, "points": [[float(x), float(y)]], "shape_type": "point"} for n, (x, y) in zip(names, pts)]
    shapes += list(extra)
    p = tmp_path / "001.json"
    p.write_text(json.dumps({"shapes": shapes, "imagePath": "001.jpg", "imageHeight": 600, "imageWidth": 484}))
    return p


def test_labelme_round_trip(tmp_path, fixture_samples):
    pts = fixture_samples[0].points
    order = np.random.default_rng(1).permutation(19)  # file order must not matter
    p = _labelme(tmp_path, pts[order], [ISBI19.names[i] for i in order])
    s = read_labelme(p, ISBI19, 0.4)
    assert np.allclose(s.points, pts) and s.image.name == "001.jpg"


@pytest.mark.parametrize("mutate,match", [
    (lambda n, p: (n[:-1], p[:-1]), "missing landmark"),
    (lambda n, p: (n + [n[0]], np.vstack([p, p[:1]])), "labelled twice"),
    (lambda n, p: (["nose"] + n[1:], p), "not a landmark"),
])
def test_labelme_malformed(tmp_path, fixture_samples, mutate, match):
    names, pts = mutate(list(ISBI19.names), fixture_samples[0].points)
    with pytest.raises(AnnotationError, match=match):
        read_labelme(_labelme(tmp_path, pts, names), ISBI19, 0.4)


def test_labelme_not_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{oops")
    with pytest.raises(AnnotationError, match="not readable JSON"):
        read_labelme(p, ISBI19, 0.4)


def test_aariz_round_trip(tmp_path):
    titles = ["A-point", "Anterior Nasal Spine", "B-point", "Menton", "Nasion", "Orbitale", "Pogonion",
              "Posterior Nasal Spine", "Pronasale", "Ramus", "Sella", "Articulare", "Condylion", "Gnathion", "Gonion",
              "Porion", "Lower 2nd PM Cusp Tip", "Lower Incisor Tip", "Lower Molar Cusp Tip", "Upper 2nd PM Cusp Tip",
              "Upper Incisor Apex", "Upper Incisor Tip", "Upper Molar Cusp Tip", "Lower Incisor Apex",
              "Labrale inferius", "Labrale superius", "Soft Tissue Nasion", "Soft Tissue Pogonion", "Subnasale"]
    pts = np.arange(58, dtype=float).reshape(29, 2) + 0.5
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"landmarks": [{"title": t, "value": {"x": x, "y": y}} for t, (x, y) in zip(titles, pts)]}))
    s = read_aariz(p, ISBI_FIX / "images" / "001.jpg", AARIZ29, 0.1)
    assert np.allclose(s.points, pts)
    p.write_text(json.dumps({"landmarks": [{"title": t, "value": {"x": 1, "y": 2}} for t in titles[:-1]]}))
    with pytest.raises(AnnotationError, match="subnasale"):
        read_aariz(p, ISBI_FIX / "images" / "001.jpg", AARIZ29, 0.1)


def test_every_problem_of_a_file_is_said_at_once(tmp_path):
    d = _copy(tmp_path)
    _edit_csv(d / "senior.csv", lambda r: [r[0], [r[1][0], "abc"] + r[1][2:], [r[2][0], r[2][1], "x"] + r[2][3:]]
              + r[3:])
    with pytest.raises(AnnotationError, match=r"2 problem\(s\): line 2, sella_x: .*'abc'.*; line 3, sella_y"):
        read_isbi(d, ISBI19, spacing=0.4)


def test_blank_cells_are_unlabelled_points_where_gaps_are_allowed(tmp_path):
    """A clinic's label file with two blank points (001's porion, 151's sella): read as NaN with gaps, the other
    annotator's label kept where one labelled it; refused without (training needs every point)."""
    from train.data.readers import missing_per_landmark

    d = _copy(tmp_path)
    _edit_csv(d / "senior.csv", lambda r: [r[0], r[1][:7] + ["", ""] + r[1][9:]] + r[2:5]
              + [r[5][:1] + ["", ""] + r[5][3:]] + r[6:])
    with pytest.raises(AnnotationError, match="not a number"):
        read_isbi(d, ISBI19, spacing=0.4)
    one = {s.id: s for s in read_isbi(d, ISBI19, ("senior",), spacing=0.4, gaps=True)}
    assert np.isnan(one["001"].points[3]).all() and np.isfinite(one["001"].points[:3]).all()
    assert missing_per_landmark(list(one.values()), ISBI19) == {"porion": 1, "sella": 1}
    both = {s.id: s for s in read_isbi(d, ISBI19, ("senior", "junior"), spacing=0.4, gaps=True)}
    jun = read_points_csv(d / "junior.csv", ISBI19)
    assert np.allclose(both["001"].points[3], jun["001.jpg"][3])        # the junior's porion alone
    assert len(load_folder(d, ISBI19, split=["train"], gaps=True)) == 4


def test_a_dangling_spacing_file_is_an_error_not_a_default(tmp_path):
    d = _copy(tmp_path)
    (d / "spacing.csv").unlink()
    (d / "spacing.csv").symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(AnnotationError, match="cannot be read"):
        load_folder(d, ISBI19)
