"""Fine-tuning starts from a shipped ONNX file: its weights are read back into a trainable model."""
import numpy as np
import onnx
import pytest
import torch
from conftest import ISBI_FIX

from sdk.errors import ModelError
from train.checkpoint import load_checkpoint
from train.from_onnx import _module_path, checkpoint_from_onnx, recalibrate_batchnorm
from train.trainer import model_from_checkpoint


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory, tiny_run):
    from convert.pipeline import convert

    out = tmp_path_factory.mktemp("int8")
    rep = convert(tiny_run[0] / "last.pt", out, int8_onnx=True, ort_qdq=True, calib_data=ISBI_FIX, calib_split=None,
                  calib_count=4, check_images=2, int8_tol_input_px=1e9, progress=False)
    return {k: rep["files"][k]["path"] for k in ("int8_onnx", "ort_qdq")}


def _inputs(n=2, size=128):
    """``n`` fixture cephalograms as the tiny model's inputs (INT8 activation ranges were calibrated on such)."""
    from sdk.preprocess import Preprocessing

    pre = Preprocessing((size, size), 1, 0.5, 0.25, 0.0)
    files = sorted((ISBI_FIX / "images").glob("*.jpg"))[:n]
    return torch.from_numpy(np.stack([pre.prepare(f)[0] for f in files]))


def test_scope_names_become_module_paths():
    assert _module_path("/backbone/layer1/layer1.0/conv1/Conv") == "backbone.layer1.0.conv1"
    assert (_module_path("/backbone/stage2/stage2.0/fuse_layers.0.1/fuse_layers.0.1.0/Conv")
            == "backbone.stage2.0.fuse_layers.0.1.0")
    assert _module_path("/out/Conv") == "out"


def test_fp32_file_gives_back_the_trained_model(tiny_run, tiny_onnx):
    original = model_from_checkpoint(load_checkpoint(tiny_run[0] / "last.pt"))
    ck = checkpoint_from_onnx(tiny_onnx["onnx"])
    assert ck["config"]["backbone"] == "hrnet_w18_small" and ck["config"]["input_size"] == 128
    recovered = model_from_checkpoint(ck)
    x = _inputs()
    with torch.no_grad():
        a, b = original(x), recovered(x)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


@pytest.mark.parametrize("kind", ["int8_onnx", "ort_qdq"])
def test_int8_file_gives_back_its_dequantized_weights(tiny_run, int8_files, kind):
    import onnxruntime as ort

    path = int8_files[kind]
    recovered = model_from_checkpoint(checkpoint_from_onnx(path))
    original = model_from_checkpoint(load_checkpoint(tiny_run[0] / "last.pt"))
    # the head's last conv has no BatchNorm: its weights come back within one int8 step of the originals
    w0, w1 = original.out.weight.detach(), recovered.out.weight.detach()
    step = w0.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert ((w0 - w1).abs() <= step * 1.01).all()
    # and the whole model computes what the INT8 file computes, up to its activation rounding
    x = _inputs()
    with torch.no_grad():
        mine = recovered(x).numpy()
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] > 0.98


def test_recalibration_keeps_the_function_and_sets_real_statistics(tiny_onnx):
    import copy

    model = model_from_checkpoint(checkpoint_from_onnx(tiny_onnx["onnx"]))
    x = _inputs(4)

    def train_mode(m):       # a copy: training-mode forwards update the running statistics
        with torch.no_grad():
            return copy.deepcopy(m).train()(x)

    with torch.no_grad():
        before = model(x)
    train_before = train_mode(model)
    bn = model.backbone.bn1
    assert torch.all(bn.running_var == 1.0)
    model.train()
    seen = recalibrate_batchnorm(model, [x[:2], x[2:]])
    assert seen == 4 and not torch.all(bn.running_var == 1.0) and model.training    # mode restored
    model.eval()
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-4)
    # training-mode BatchNorm (batch statistics) now computes nearly what the exported model computes
    assert (train_mode(model) - after).abs().mean() < 0.1 * (train_before - before).abs().mean()


def test_train_cli_fine_tunes_from_an_onnx_file(tmp_path, tiny_onnx):
    from click.testing import CliRunner

    from cephalo.cli import main

    run = tmp_path / "ft"
    r = CliRunner().invoke(main, ["train", "--data", str(ISBI_FIX), "--out", str(run), "--init",
                                  str(tiny_onnx["onnx"]), "--backbone", "hrnet_w18_small", "--input-size", "128",
                                  "--epochs", "1", "--batch-size", "4", "--val-count", "2", "--amp", "off",
                                  "--threads", "2", "--max-steps-per-epoch", "1", "--no-progress",
                                  "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    assert "weights read from" in r.output
    ck = load_checkpoint(run / "last.pt")
    assert ck["epoch"] == 1 and "weights read from" in ck["init"] and "recalibrate_bn" not in ck


def test_files_that_are_not_our_models_are_refused(tmp_path, tiny_onnx):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        checkpoint_from_onnx(junk)
    bare = onnx.load(str(tiny_onnx["onnx"]))
    del bare.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    with pytest.raises(ModelError, match="bare.onnx.*metadata"):
        checkpoint_from_onnx(path)
