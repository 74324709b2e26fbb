"""Each default is written once, in the library: a command line option that shows a default shows the library
function's (issue 48), and ``train``'s options leave every default to the training config."""
import inspect

import pytest


def _norm(v):
    """A library default as the command line writes it ('senior,junior' for a tuple of names)."""
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    return v


def _pairs():
    from cephalo import build_commands, train_commands
    from convert.bundle import bundle_first_stage, bundle_local_stage
    from convert.calibrate import calibrate_local
    from convert.pipeline import convert
    from train.runner import evaluate_checkpoint, make_pack, train_local

    return [(train_commands.train_local, train_local, {}),
            (train_commands.pack, make_pack, {}),
            (train_commands.eval_cmd, evaluate_checkpoint, {}),
            (build_commands.calibrate, calibrate_local, {}),
            (build_commands.bundle, bundle_first_stage, {}),
            (build_commands.bundle_local, bundle_local_stage, {}),
            (build_commands.convert, convert, {"int8_tol": "int8_tol_input_px"})]


def test_each_shown_default_is_the_library_functions():
    import click

    checked = 0
    for cmd, fn, renamed in _pairs():
        sig = inspect.signature(fn).parameters
        ctx = click.Context(cmd)
        for p in cmd.params:
            name = renamed.get(p.name, p.name)
            if p.param_type_name != "option" or name not in sig or sig[name].default is inspect.Parameter.empty:
                continue
            lib, shown = sig[name].default, p.get_default(ctx)
            if shown in (None, "") and (lib is None or shown is None):
                continue            # not given: the library's default applies
            assert _norm(lib) == shown, f"{cmd.name} --{p.name}: shows {shown!r}, the library's is {lib!r}"
            checked += 1
    assert checked >= 20


def test_the_local_stage_defaults_are_the_shipped_recipe():
    """The local stage's widths were written three times and disagreed; the one default is the bundled pair's."""
    from sdk import Detector
    from train.config import LocalConfig
    from train.runner import train_local

    recipe = Detector(backend="onnxruntime").local.meta.extra["recipe"]
    assert tuple(recipe["widths"]) == LocalConfig().widths
    assert inspect.signature(train_local).parameters["widths"].default == ",".join(map(str, LocalConfig().widths))


def test_train_leaves_every_default_to_the_config():
    from cephalo.train_commands import train
    from train.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    opts = [p for p in train.params if p.name in fields]
    assert len(opts) >= 20
    assert all(p.default is None for p in opts), [p.name for p in opts if p.default is not None]


@pytest.mark.parametrize("old,new", [("refine", "local_stage"), ("labels", "site")])
def test_one_table_of_old_names(old, new):
    from sdk.errors import CephaloError
    from sdk.renamed import RENAMED, renamed

    assert RENAMED[old] == new
    with pytest.warns(DeprecationWarning, match=f"{old}= is now {new}="):
        assert renamed({old: "x"}, {new: None}, "f()") == {new: "x"}
    with pytest.raises(CephaloError, match=f"{old}= is the old name of {new}="):
        renamed({old: "x"}, {new: "y"}, "f()", warn=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        renamed({"colour": 1}, {}, "f()")
