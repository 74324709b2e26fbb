"""The shipped model's recipe (recipes/isbi19_default.py): every step is a call its function accepts, in an order
where each step's inputs are made by an earlier step."""
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

from isbi19_default import main as recipe_main  # noqa: E402
from isbi19_default import steps


def _paths(step):
    return [v for v in list(step.args) + list(step.kwargs.values()) if isinstance(v, Path)]


def test_every_step_binds_to_its_function(tmp_path):
    plan = steps(tmp_path / "data", tmp_path / "work", install=False)
    assert [s.name for s in plan][:3] == ["pack384", "gpu_train", "gpu_join"]
    for i, step in enumerate(plan):
        inspect.signature(step.call).bind(*step.args, **step.kwargs)     # names and arity; nothing runs
        made_earlier = [s.done for s in plan[:i]]
        outputs = {step.done, *(p for p in _paths(step) if p == step.args[-1] or p.name.endswith(".json"))}
        for p in _paths(step):                       # inputs inside the work folder come from earlier steps
            if str(tmp_path / "work") in str(p) and p not in outputs and p.parent not in outputs:
                assert any(str(p).startswith(str(m)) for m in made_earlier), (step.name, p)


def test_list_and_dry_run(tmp_path, capsys):
    assert recipe_main(["--data", str(tmp_path), "--work", str(tmp_path / "w"), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(steps(tmp_path, tmp_path / "w", install=False)) and listed[0].startswith("[pack384]")
    assert any(line.startswith("[finetune_artifacts]") and "aug_artifacts_p=" in line for line in listed)
    assert recipe_main(["--data", str(tmp_path), "--work", str(tmp_path / "w"), "--dry-run",
                        "--from", "train_local"]) == 0
    out = capsys.readouterr().out
    assert "[finetune_320] before --from: skipped" in out and "[train_local]" in out and "annotators=" in out
    assert not (tmp_path / "w").exists()             # a dry run writes nothing
