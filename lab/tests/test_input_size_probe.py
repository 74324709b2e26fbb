"""lab.studies.input_size_probe: one checkpoint exported at two input sizes, with the local stage rescaled."""
import json

from click.testing import CliRunner


def test_probe_runs_a_checkpoint_at_other_sizes(tiny_run, tiny_local, tmp_path):
    from product_conftest import ISBI_FIX

    from lab.studies.input_size_probe import main

    out = tmp_path / "probe"
    res = CliRunner().invoke(main, ["--data", str(ISBI_FIX), "--checkpoint", str(tiny_run[0] / "last.pt"),
                                    "--local", str(tiny_local["int8"]), "--sizes", "128,96", "--split", "test1",
                                    "--n", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "input_size_probe.json").read_text())["rows"]
    assert [(r["input"], r["stages"]) for r in rows] == [(128, 1), (128, 2), (96, 1), (96, 2)]
    assert all(r["mre_mm"] > 0 and r["mre_mm"] == r["mre_mm"] for r in rows)   # measured (the tiny model is untrained)
    # the exported files are scratch: only the figures stay
    assert sorted(p.name for p in out.iterdir()) == ["input_size_probe.json", "input_size_probe.md"]
    bad = CliRunner().invoke(main, ["--data", str(ISBI_FIX), "--checkpoint", str(tiny_run[0] / "last.pt"),
                                    "--sizes", "100", "--out", str(out)])
    assert bad.exit_code != 0 and "multiples of 32" in bad.output
