"""Give a QDQ model's Concat outputs their own QuantizeLinear -> DequantizeLinear pair, so onnxruntime runs the
convolution after a Concat in INT8.

NNCF quantizes a Concat's inputs with one shared scale and zero point, and OpenVINO keeps the tensor INT8 through
the Concat. onnxruntime only fuses ``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv``, and a Conv
fed by a Concat has no DequantizeLinear in front of it, so it runs in FP32 on dequantized tensors: in the local
stage's U-Net those are the three decoder convolutions, most of its time under onnxruntime (lab/RESULTS.md).

The pair is added only where every input of the Concat is dequantized with the *same* per-tensor scale and zero
point: the concatenated values then lie on that grid and inside its range, so quantizing them again with it
gives back exactly the same integers. The model computes the same function; only the runtime's fusion changes.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def _per_tensor_params(dq: onnx.NodeProto, inits: dict):
    """(scale, zero point) arrays of a DequantizeLinear with constant per-tensor parameters, else None."""
    if len(dq.input) < 3 or dq.input[1] not in inits or dq.input[2] not in inits:
        return None
    scale, zp = numpy_helper.to_array(inits[dq.input[1]]), numpy_helper.to_array(inits[dq.input[2]])
    if scale.size != 1 or zp.size != 1:
        return None
    return scale, zp


def requantize_concats(model: onnx.ModelProto) -> int:
    """Insert ``QuantizeLinear -> DequantizeLinear`` after each Concat whose inputs all share one per-tensor
    quantization grid (in place). Returns how many Concats got the pair."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = defaultdict(list)
    for n in g.node:
        for name in n.input:
            consumers[name].append(n)
    inits = {i.name: i for i in g.initializer}
    graph_outputs = {o.name for o in g.output}
    new_nodes = []
    for node in list(g.node):
        new_nodes.append(node)
        out = node.output[0]
        if node.op_type != "Concat" or out in graph_outputs:
            continue
        if any(c.op_type == "QuantizeLinear" for c in consumers[out]):
            continue            # already quantized after the Concat
        dqs = [producer.get(i) for i in node.input]
        if not dqs or any(d is None or d.op_type != "DequantizeLinear" for d in dqs):
            continue
        params = [_per_tensor_params(d, inits) for d in dqs]
        if any(p is None for p in params):
            continue
        s0, z0 = params[0]
        if any(not (np.array_equal(s, s0) and np.array_equal(z, z0) and z.dtype == z0.dtype) for s, z in params):
            continue
        # The first input's own scale / zero-point initializers: the same values, no new constants needed.
        grid = list(dqs[0].input[1:3])
        q = onnx.helper.make_node("QuantizeLinear", [out, *grid], [f"{out}_requant_q"], name=f"{node.name}_requant_q")
        dq = onnx.helper.make_node("DequantizeLinear", [q.output[0], *grid], [f"{out}_requant_dq"],
                                   name=f"{node.name}_requant_dq")
        for c in consumers[out]:
            for k, name in enumerate(c.input):
                if name == out:
                    c.input[k] = dq.output[0]
        new_nodes += [q, dq]
    added = (len(new_nodes) - len(g.node)) // 2
    if added:
        del g.node[:]
        g.node.extend(new_nodes)
    return added


def requantize_file(src, dst=None) -> int:
    """:func:`requantize_concats` on an ONNX file, metadata kept; written atomically to ``dst`` (default: in place)."""
    from .files import atomic_path

    src = Path(src)
    model = onnx.load(str(src))
    n = requantize_concats(model)
    with atomic_path(Path(dst) if dst else src) as tmp:
        onnx.save(model, str(tmp))
    return n
