"""The archive run on a local single-node Ray cluster: statuses of good and bad files, resuming after an
interruption, and points equal to a local run's, bit for bit."""
import json
import shutil

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(600)     # a stalled cluster fails the test instead of hanging CI

from conftest import ISBI_FIX  # noqa: E402

from sdk import Detector  # noqa: E402

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)     # 2 workers + reading and writing
    yield
    ray.shutdown()


@pytest.fixture()
def archive(tmp_path):
    """Four good images in two sub-folders, a corrupt JPEG, an empty file and a list file naming two of them."""
    root = tmp_path / "archive"
    for i, p in enumerate(IMGS[:4]):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)
    (root / "a" / "broken.jpg").write_bytes(IMGS[0].read_bytes()[:300])
    (root / "b" / "empty.png").write_bytes(b"")
    return root


def test_statuses_resume_and_local_equality(cluster, archive, tmp_path):
    from cephalo.archive import list_inputs, read_shards, run_archive

    paths, problems = list_inputs([str(archive)], recursive=True)
    assert len(paths) == 6 and not problems
    out = tmp_path / "out"
    # an interrupted run: only part of the archive was read, and its last shard line was torn
    first = run_archive(paths[:3], out, workers=1, threads=1, backend="onnxruntime")
    shard = sorted(out.rglob("*.json"))[-1]
    shard.write_text(shard.read_text() + '{"path": "torn', encoding="utf-8")
    rerun = run_archive(paths, out, workers=2, threads=1, backend="onnxruntime")
    done_first = sum(first[s] for s in ("ok", "check", "flagged"))
    assert rerun["skipped"] == done_first and sum(rerun.values()) == 6
    rows = read_shards(out)
    assert set(rows) == set(paths)
    status = {p.split("/")[-1]: r["status"] for p, r in rows.items()}
    assert status["broken.jpg"] == "failed" and status["empty.png"] == "failed"
    assert "broken.jpg" in rows[[p for p in paths if p.endswith("broken.jpg")][0]]["error"]
    assert "empty" in rows[[p for p in paths if p.endswith("empty.png")][0]]["error"]
    det = Detector(backend="onnxruntime", threads=1)
    for p, r in rows.items():
        if r["status"] == "failed":
            continue
        rec = json.loads(r["record"])
        assert rec["file"] == p and rec["status"] == r["status"]
        xy = np.array([[lm["x"], lm["y"]] for lm in rec["landmarks"]])
        local = det(p).to_dict()
        assert xy.tolist() == [[lm["x"], lm["y"]] for lm in local["landmarks"]], p     # bit for bit (as rounded)


def test_list_files_and_missing_inputs_are_named(tmp_path, archive):
    from cephalo.archive import list_inputs

    lst = tmp_path / "scans.txt"
    good = sorted(archive.rglob("*.jpg"))[0]
    lst.write_text(f"# two scans\n{good}\n{tmp_path / 'gone.jpg'}\n", encoding="utf-8")
    paths, problems = list_inputs([str(lst), str(tmp_path / "nothing_here")])
    assert paths == [str(good.resolve())]
    assert {p for p, _ in problems} == {str(tmp_path / "gone.jpg"), str(tmp_path / "nothing_here")}


def test_cli_archive_exit_code_and_summary(cluster, archive, tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main

    res = CliRunner().invoke(main, ["archive", str(archive), "-r", "--out", str(tmp_path / "o"), "--backend",
                                    "onnxruntime", "--format", "parquet"])
    assert res.exit_code == 1, res.output            # two files failed
    assert "6 image(s)" in res.output and "2 failed" in res.output
    assert list((tmp_path / "o").rglob("*.parquet"))
