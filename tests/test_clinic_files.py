"""A clinic's own lists and spacing files given to ``cephalo predict`` (issue 46): a list file of images, one path a
line, and a per-image spacing CSV in the ``image,spacing`` form that ``adapt`` reads."""
import json

import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from cephalo.cli import main
from sdk import AnnotationError
from sdk.spacing import read_spacing_table

IMAGES = sorted((ISBI_FIX / "images").glob("*.jpg"))


def _records(output: str):
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_a_list_file_and_per_image_spacings(tmp_path):
    """The list's images are read in its order (comments and blank lines skipped, relative paths from its folder);
    each image takes its own row's spacing, by file name or path; an image without a row keeps no caller spacing
    and the run says so; a line naming nothing fails alone."""
    lst = tmp_path / "lists" / "today.txt"
    lst.parent.mkdir()
    rel = str(IMAGES[1])
    lst.write_text(f"# the morning's patients\n{IMAGES[0]}\n\n{rel}\n../nowhere.jpg\n{IMAGES[2]}\n")
    table = tmp_path / "spacing.csv"
    table.write_text(f"image,spacing\n{IMAGES[0].name},0.125\n{IMAGES[1]},0.08\n")
    r = CliRunner().invoke(main, ["predict", "--list", str(lst), "--spacing", str(table), "--backend", "onnxruntime"])
    recs = _records(r.stdout)
    assert [rec["file"] for rec in recs] == [str(p) for p in IMAGES[:3]], r.output
    assert [(rec["spacing_mm"], rec["spacing_source"]) for rec in recs[:2]] == [(0.125, "caller"), (0.08, "caller")]
    assert recs[2]["spacing_source"] != "caller"
    assert "1 image(s) have no row in the spacing file" in r.output
    assert "nowhere.jpg" in r.output and r.exit_code == 1               # the missing line, named; the rest read


def test_a_relative_list_is_read_from_its_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(IMAGES[0].read_bytes())
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/a.jpg\n")
    r = CliRunner().invoke(main, ["predict", "--list", str(lst), "--spacing", "0.1", "--backend", "onnxruntime"])
    assert r.exit_code in (0, 3) and _records(r.stdout)[0]["spacing_mm"] == 0.1, r.output


def test_bad_lists_and_spacing_files_are_said(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    r = CliRunner().invoke(main, ["predict", "--list", str(empty), "--backend", "onnxruntime"])
    assert r.exit_code == 1 and "names no image" in r.output and "empty.txt" in r.output
    r = CliRunner().invoke(main, ["predict", "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "--list" in r.output
    bad = tmp_path / "spacing.csv"
    bad.write_text("image,spacing\na.jpg,ten\nb.jpg,10\nc.jpg,0.1\nc.jpg,0.2\n")
    with pytest.raises(AnnotationError) as e:
        read_spacing_table(bad)
    msg = str(e.value)
    assert "spacing.csv" in msg and "3 problem(s)" in msg and "line 2" in msg and "line 3" in msg and "line 5" in msg
    r = CliRunner().invoke(main, ["predict", str(IMAGES[0]), "--spacing", str(bad), "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "line 3" in r.output, r.output
    r = CliRunner().invoke(main, ["predict", str(IMAGES[0]), "--spacing", "nothing.csv", "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "neither a number" in r.output
    assert read_spacing_table(ISBI_FIX / "spacing.csv")              # adapt's own form reads
