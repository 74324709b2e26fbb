"""The shipped model's recipe (recipes/isbi19_default.py): every step's command is one the tools accept, in an
order where each step's inputs are made by an earlier step."""
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

from isbi19_default import main as recipe_main, steps  # noqa: E402


def test_every_step_parses_with_its_tool(tmp_path):
    from cephalo.cli import main as cli

    plan = steps(tmp_path / "data", tmp_path / "work", install=False)
    assert [n for n, _, _ in plan][:3] == ["pack384", "gpu_train", "gpu_join"]
    helps = {}
    for name, cmd, done in plan:
        for _, _, before in plan[:plan.index((name, cmd, done))]:     # earlier steps' outputs, as placeholders
            if str(tmp_path) in str(before) and not before.exists():
                before.parent.mkdir(parents=True, exist_ok=True)
                before.mkdir() if before.suffix == "" else before.write_bytes(b"")
        if cmd[1:3] == ["-m", "cephalo"]:
            sub = cli.commands[cmd[3]]
            with click.Context(cli) as parent:        # option names and types are checked; nothing runs
                sub.make_context(cmd[3], cmd[4:], parent=parent)
        else:
            tool = cmd[1] if cmd[1] != "-m" else cmd[2]
            if tool not in helps:
                args = [sys.executable, tool, "--help"] if cmd[1] != "-m" else [sys.executable, "-m", tool, "--help"]
                helps[tool] = subprocess.run(args, capture_output=True, text=True, cwd=ROOT).stdout
            for opt in (c for c in cmd[2:] if c.startswith("--")):
                assert opt in helps[tool], (name, opt)
        made_earlier = [d for _, _, d in plan[:plan.index((name, cmd, done))]]
        outputs = {cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c in ("--out", "--runs", "--work", "--report")}
        for arg in cmd:                               # inputs inside the work folder come from earlier steps
            if str(tmp_path / "work") in arg and arg not in outputs:
                p = Path(arg.replace("*", "x"))
                assert any(str(p).startswith(str(m)) for m in made_earlier), (name, arg)


def test_list_and_dry_run(tmp_path, capsys):
    assert recipe_main(["--data", str(tmp_path), "--work", str(tmp_path / "w"), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 16 and listed[0].startswith("[pack384]")
    assert recipe_main(["--data", str(tmp_path), "--work", str(tmp_path / "w"), "--dry-run",
                        "--from", "train_local"]) == 0
    out = capsys.readouterr().out
    assert "[finetune_320] before --from: skipped" in out and "[train_local]" in out and "--annotators" in out
    assert not (tmp_path / "w").exists()             # a dry run writes nothing
