"""A trainable first-stage checkpoint recovered from an exported model (FP32 or INT8 QDQ ONNX).

Only ONNX files ship, so fine-tuning the bundled model (on a clinic's own images, or on other labels) starts from
its ONNX file: ``cephalo train --init model.onnx``. Export folded every BatchNorm into the convolution before it,
and INT8 stores the weights as int8 with per-channel scales; this module reads them back (dequantized) into a
:class:`train.model.HeatmapNet` built from the file's metadata. Each folded BatchNorm becomes
``x -> x + bias``; :func:`recalibrate_batchnorm` then gives it the statistics of real images while keeping that
same function, so that training-mode BatchNorm starts where the exported model was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from sdk.errors import ModelError, cause

from .checkpoint import FORMAT
from .config import TrainConfig


def _module_path(node_name: str) -> str:
    """'/backbone/layer1/layer1.0/conv1/Conv' -> 'backbone.layer1.0.conv1' (torch.onnx scope names repeat the
    parent's name in a container's children: 'layer1/layer1.0')."""
    segs = [s for s in node_name.split("/") if s][:-1]
    out: List[str] = []
    for seg in segs:
        if out and seg.startswith(out[-1] + "."):
            out[-1] = seg
        else:
            out.append(seg)
    # 'layer1.0' replaced 'layer1'; its own name is the full dotted path below the previous segment
    return ".".join(out)


def _conv_weights(model_proto) -> Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]]:
    """{module path: (float weight, float bias or None)} of every Conv node, dequantizing int8 weights."""
    from onnx import numpy_helper

    g = model_proto.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    produced = {o: n for n in g.node for o in n.output}

    def value(name: str) -> np.ndarray:
        if name in init:
            return init[name].astype(np.float32)
        node = produced.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            raise ModelError(f"convolution input {name!r} is neither a constant nor a dequantized constant")
        q, scale = init[node.input[0]].astype(np.float32), init[node.input[1]].astype(np.float32)
        zero = init[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return (q - zero) * scale

    out: Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]] = {}
    for n in g.node:
        if n.op_type != "Conv":
            continue
        path = _module_path(n.name or n.output[0])
        out[path] = (value(n.input[1]), value(n.input[2]) if len(n.input) > 2 and n.input[2] else None)
    return out


def _conv_bn_pairs(model: nn.Module, input_hw: Tuple[int, int], channels: int) -> Dict[str, str]:
    """{conv module path: the BatchNorm that reads its output}, found by running the model once."""
    names = {m: n for n, m in model.named_modules()}
    last_out: Dict[int, str] = {}
    pairs: Dict[str, str] = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: last_out.__setitem__(id(o), names[mod])))
        elif isinstance(m, nn.BatchNorm2d):
            def pre(mod, inp):
                conv = last_out.get(id(inp[0]))
                if conv is not None:
                    pairs[conv] = names[mod]
            hooks.append(m.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, *input_hw))
    finally:
        for h in hooks:
            h.remove()
    return pairs


def checkpoint_from_onnx(path: Path) -> Dict:
    """A first-stage checkpoint dict (``cephalo-checkpoint`` format, epoch 0) holding the ONNX model's weights.

    ``recalibrate_bn`` in it asks the trainer to run :func:`recalibrate_batchnorm` on its training images.
    Raises :class:`sdk.ModelError` naming the file when it is not one of our exported heatmap models.
    """
    import onnx

    from sdk.metadata import META_KEY, ModelMeta, missing_metadata_error

    from .model import build_model

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # not a file, not ONNX, truncated...
        raise ModelError(f"{path} cannot be read as an ONNX model: {type(e).__name__}: {cause(e)}") from e
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise missing_metadata_error(str(path))
    meta = ModelMeta.from_json(props[META_KEY], str(path))
    recipe = dict(meta.extra.get("recipe") or {})
    backbone = recipe.get("backbone")
    if not backbone:
        raise ModelError(f"{path}: its metadata names no backbone (extra.recipe.backbone); it was not exported by "
                         f"cephalo export")
    cfg = TrainConfig.from_dict({**recipe, "schema": meta.schema.id, "input_size": meta.input_h,
                                 "heatmap_stride": meta.heatmap_stride, "sigma": meta.sigma, "channels": meta.channels,
                                 "mean": meta.mean, "std": meta.std, "pad_value": meta.pad_value})
    if meta.input_h != meta.input_w:
        raise ModelError(f"{path}: input {meta.input_h}x{meta.input_w} is not square; training makes square inputs")
    model = build_model(cfg, meta.schema.k)
    convs = _conv_weights(proto)
    pairs = _conv_bn_pairs(model, cfg.input_hw, cfg.channels)
    modules = dict(model.named_modules())
    torch_convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    missing = [n for n in torch_convs if n not in convs]
    if missing or len(convs) != len(torch_convs):
        raise ModelError(f"{path}: its convolutions do not match a {backbone} model with {meta.schema.k} landmarks "
                         f"({len(convs)} in the file, {len(torch_convs)} in the model; missing e.g. {missing[:3]})")
    with torch.no_grad():
        for name in torch_convs:
            conv, (w, b) = modules[name], convs[name]
            if tuple(conv.weight.shape) != w.shape:
                raise ModelError(f"{path}: {name} has weights {w.shape}, the model needs {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            bn = modules[pairs[name]] if name in pairs else None
            if bn is not None:              # folded: conv(x) + b == bn(conv(x)) with unit statistics
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(torch.from_numpy(b if b is not None else np.zeros(w.shape[0], np.float32)))
            elif conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(b if b is not None else np.zeros(w.shape[0], np.float32)))
            elif b is not None and np.abs(b).max() > 0:
                raise ModelError(f"{path}: {name} has a bias but no BatchNorm follows it in a {backbone} model")
    return {"format": FORMAT, "stage": "first", "model": model.state_dict(), "config": cfg.to_dict(),
            "schema": meta.schema.to_dict(), "epoch": 0, "best_mre_mm": float("inf"), "history": [],
            "init": f"weights read from {path.name}" + (" (dequantized INT8)" if meta.extra.get("precision") == "int8"
                                                          else ""),
            "recalibrate_bn": True}


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Give every BatchNorm the per-channel mean and variance of its input over ``batches`` while keeping the
    function it computes in eval mode (``weight = sqrt(var + eps) * w / sqrt(old_var + eps)``, bias moved to
    match), so training-mode BatchNorm, which normalises by batch statistics, starts near the eval-mode model.
    Returns the number of images seen."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in bns}

    def pre(mod, inp):
        x = inp[0].detach().float()
        s = sums[id(mod)]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    hooks = [m.register_forward_pre_hook(pre) for m in bns]
    seen = 0
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for x in batches:
                model(x)
                seen += len(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if seen == 0:
        return 0
    with torch.no_grad():
        for m in bns:
            total, sq, n = sums[id(m)]
            mu = total / n
            var = (sq / n - mu * mu).clamp_min(0.0)
            # eval: (x - m0) / s0 * w + b  ==  (x - mu) / s1 * w' + b'  with  w' = w s1 / s0,  b' = b + (mu - m0) w / s0
            s0 = torch.sqrt(m.running_var + m.eps)
            s1 = torch.sqrt(var + m.eps)
            m.bias.add_((mu - m.running_mean) * m.weight / s0)
            m.weight.mul_(s1 / s0)
            m.running_mean.copy_(mu)
            m.running_var.copy_(var)
    return seen
