"""Every op family under AddressSanitizer + UndefinedBehaviorSanitizer: a few training steps of
each test architecture with each optimizer (SGD with momentum, AdamW) against the sanitizer
build of libintedge, with threads, a saved and restored state, and evaluation. Run by tools/run_tests.sh as

    LD_PRELOAD=<libasan>:<libubsan> INTEDGE_LIBRARY=build/asan/libintedge.so python tests/python/sanitizer_smoke.py

The C tests cover the loader, numerics and training API under the sanitizers; this covers the
operators, which the Python tests drive."""
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
import intedge  # noqa: E402
from intedge import iem  # noqa: E402
from intedge.runtime import Model, Session, dyadic  # noqa: E402
from op_harness import gemm_upstream  # noqa: E402
from torch_models import (Activation, DropoutNet, LayoutZoo, LeNet5, MobileNetV2Small, ResidualPools,  # noqa: E402
                          ResNet8, export, export_training)

CASES = [
    ("lenet5", lambda: LeNet5(flatten_by_view=True), (1, 28, 28), export),
    ("resnet8", lambda: ResNet8(in_ch=3, width=4), (3, 16, 16), export_training),
    ("mobilenetv2", lambda: MobileNetV2Small(in_ch=1), (1, 16, 16), export_training),
    ("residual-pools", ResidualPools, (1, 12, 12), export),
    ("layout", LayoutZoo, (1, 8, 8), export),
    ("dropout", DropoutNet, (1, 8, 8), export_training),
] + [(f"activation-{a}", (lambda a=a: Activation(a)), (1, 8, 8), export) for a in sorted(Activation.FUNCTIONS)]


def iem_cases(rng):
    """Ops the importer does not map yet, as .iem graphs: (name, graph, inputs, labels)."""
    from test_embedding import T, V, embedding_graph

    ids = rng.integers(0, V, (12, T))
    yield "embedding", embedding_graph(rng, const_positions=True), ids, rng.integers(0, 4, 12)

    from test_param_broadcast import binary_graph
    from transformer_graphs import attention_graph, matmul_graph

    # class token, positional embedding, Gemm on tokens, Q . K^T and P . V (products large enough
    # to split over the threads at the full batch)
    yield ("attention", attention_graph(rng, t=97, d=16, heads=4, k0=24), rng.standard_normal((12, 96, 24)),
           rng.integers(0, 10, 12))
    for a, b, ta, tb in (((129, 16), (4, 16, 129), 0, 0), ((2, 1, 5, 3), (1, 3, 5, 65), 1, 0),
                         ((4, 17, 5), (17, 5), 0, 1)):
        g, t0, out = matmul_graph(rng, a, b, ta, tb)
        yield f"matmul-{a}x{b}", g, rng.standard_normal((12, t0, 5)), rng.integers(0, int(np.prod(out)), 12)
    from intedge.onnx_import import Walker
    from torch_models import ViT, distinct_weights

    # a small ViT through the importer: Slice, LayerNorm, Softmax, MatMul, GELU, ParamBroadcast,
    # a trained positional embedding, the exporter's batch moves as runtime Transposes
    vit = export(distinct_weights(ViT(image=14, patch=7, dim=16, heads=2, mlp=24)), torch.zeros(2, 1, 14, 14),
                 dynamo=False, opset=17)
    walker = Walker(vit, "vit")
    walker.run()
    yield "vit", walker.graph, rng.standard_normal((12, 1, 14, 14)), rng.integers(0, 10, 12)

    # token ids through the importer, over a vocabulary past one 64-row word of the backward's row
    # bitmap (ids 63 and 127 are each word's last bit)
    text = export(torch.nn.Sequential(torch.nn.Embedding(130, 8), torch.nn.Flatten(), torch.nn.Linear(48, 10)),
                  torch.zeros(2, 6, dtype=torch.long), dynamo=False, opset=17)
    walker = Walker(text, "text")
    walker.run()
    ids = rng.integers(0, 130, (12, 6))
    ids[0, :2] = 63, 127
    yield "token-ids", walker.graph, ids, rng.integers(0, 10, 12)

    from test_conv_transpose import GEOMETRIES, convt_graph
    for i in (1, 2, 3):  # output padding; groups with dilation and stride 3; depthwise
        g, k, *_, out = convt_graph(GEOMETRIES[i], rng)
        yield f"conv-transpose-{i}", g, rng.standard_normal((12, k)), rng.integers(0, int(np.prod(out)), 12)
    from test_slice import slice_graph

    g, total = slice_graph(rng, [(0, 2, 1), (1, 1, 3), (2, 0, 4), (2, 3, 4)])  # overlapping windows: a fan-out sum
    yield "slice", g, rng.standard_normal((12, 6)), rng.integers(0, total, 12)
    for kind in ("sub", "mul"):  # a trained parameter broadcast over the batch and an axis
        yield f"parameter-{kind}", binary_graph(rng, kind, (17, 1)), rng.standard_normal((12, 17, 5)), \
            rng.integers(0, 51, 12)
    from test_resize import GEOMETRIES as RESIZES
    from test_resize import rational_resize_graph

    for (shape, geometry), kind in zip(RESIZES[1:], [("linear", "half_pixel", None), ("nearest", "half_pixel", "round_prefer_ceil"),
                                                     ("linear", "align_corners", None), ("nearest", "asymmetric", "floor")]):
        g, k, out = rational_resize_graph(shape, geometry, *kind, rng)  # rational scales, down and up
        yield (f"resize-{kind[0]}-{kind[1]}-to-{out[0]}x{out[1]}", g, rng.standard_normal((12, k)),
               rng.integers(0, shape[0] * out[0] * out[1], 12))


def transformer_ops_graph(kind, p0, rng):
    """x -> Gemm -> [4, 6] -> LayerNorm -> Activation(kind) -> Softmax (a constant mask with a
    row all masked, and the Relu of a Gemm as a second, activation mask) -> Gemm -> 10 logits."""
    g = iem.Graph()
    k = gemm_upstream(g, (4, 6), rng, k=12)
    gamma, beta = np.ones(6, np.float32), np.zeros(6, np.float32)
    mask = np.triu(np.ones((4, 6), np.float32), 3)
    mask[1] = 1
    wm, wo = rng.standard_normal((6, k)).astype(np.float32), rng.standard_normal((10, 24)).astype(np.float32) / 5
    for name, data, state in (("gamma", gamma, False), ("beta", beta, False), ("mask", mask, True),
                              ("w_mask", wm, False), ("w_out", wo, False)):
        g.add_tensor(name, iem.KIND_PARAM, data.shape, data, state=state)
    for name, shape in (("ln", (4, 6)), ("act", (4, 6)), ("p", (4, 6)), ("q", (4, 6)), ("m_lin", (6,)), ("m", (6,)),
                        ("q_flat", (24,)), ("logits", (10,))):
        g.add_tensor(name, iem.KIND_ACTIVATION, shape)
    eps, d0 = dyadic(1e-5), dyadic(p0)
    g.add_node("ln", iem.OP_LAYERNORM, ["h", "gamma", "beta"], ["ln"], [1, eps.m, eps.e])
    g.add_node("act", iem.OP_ACTIVATION, ["ln"], ["act"], [kind, d0.m, d0.e])
    g.add_node("softmax", iem.OP_SOFTMAX, ["act", "mask"], ["p"], [1, 0, 0])
    g.add_node("mask_fc", iem.OP_GEMM, ["x", "w_mask"], ["m_lin"], [1])
    g.add_node("mask_relu", iem.OP_RELU, ["m_lin"], ["m"])
    g.add_node("softmax_keys", iem.OP_SOFTMAX, ["p", "m"], ["q"], [1, 1, 0])
    g.add_node("flat", iem.OP_RESHAPE, ["q"], ["q_flat"])
    g.add_node("head", iem.OP_GEMM, ["q_flat", "w_out"], ["logits"], [1])
    g.output = g.index["logits"]
    return Model(iem.serialize(g)), k


TRANSFORMER_ACTIVATIONS = [(iem.ACT_GELU, 0.0), (iem.ACT_GELU_TANH, 0.0), (iem.ACT_TANH, 0.0), (iem.ACT_ERF, 0.0),
                           (iem.ACT_SQRT, 0.0), (iem.ACT_RECIPROCAL, 0.0), (iem.ACT_POW, 2.0), (iem.ACT_POW, -0.5)]


def layernorm_extremes(rng):
    """LayerNorm on inputs near float32's largest, with a row of equal values (its xhat is 0 whatever
    its r, and its shift must stay in range)."""
    g = iem.Graph()
    k = gemm_upstream(g, (3, 8), rng)
    g.tensors[g.index["w_up"]].data[8:16] = 0
    g.add_tensor("gamma", iem.KIND_PARAM, (8,), np.ones(8, np.float32))
    g.add_tensor("y", iem.KIND_ACTIVATION, (3, 8))
    eps = dyadic(1e-5)
    g.add_node("ln", iem.OP_LAYERNORM, ["h", "gamma"], ["y"], [1, eps.m, eps.e])
    g.output = g.index["y"]
    s = Session(Model(iem.serialize(g)), batch_size=4, lr=0.01, loss="mse")
    s.step((rng.standard_normal((4, k)) * 1e30).astype(np.float32), targets=rng.standard_normal((4, 24)))
    print("ok transformer-ops layernorm extremes", flush=True)


def transformer_ops(rng):
    for kind, p0 in TRANSFORMER_ACTIVATIONS:
        model, k = transformer_ops_graph(kind, p0, rng)
        x = rng.standard_normal((12, k)).astype(np.float32)
        y = rng.integers(0, 10, 12)
        for threads in (1, 2):
            s = Session(model, batch_size=8, lr=0.05, momentum=0.9, weight_decay=1e-4, threads=threads)
            for part in (slice(0, 8), slice(8, 12)):  # a full batch and a partial one
                s.step(x[part], labels=y[part])
            s.load_state(s.save_state())
            s.evaluate(x[:8], labels=y[:8])
        print(f"ok transformer-ops activation {kind}", flush=True)


def centernet_steps(rng):
    """The CenterNet loss on targets from boxes, with ordinary and huge logits (inputs x 1e4)."""
    from intedge import detect
    from torch_models import CenterNetTiny, export

    model = intedge.Model(intedge.import_onnx(export(CenterNetTiny(2, width=4), torch.randn(2, 1, 12, 20),
                                                     dynamo=False, opset=13)).iem)
    boxes = [np.array([[i % 2, 2 + i, 1, 6, 5], [1 - i % 2, 11, 4, 7, 7]], np.float64) for i in range(6)]
    labels = detect.Targets(boxes, 2, (3, 5), 4).dense
    labels[5] = detect.targets(np.zeros((0, 5)), 2, (3, 5), 4).reshape(-1)  # an image without objects
    for scale in (1.0, 1e4):
        x = (rng.standard_normal((6, 1, 12, 20)) * scale).astype(np.float32)
        for threads in (1, 2):
            s = Session(model, batch_size=4, lr=0.05, momentum=0.9, loss="centernet", threads=threads)
            for part in (slice(0, 4), slice(4, 6)):
                s.step(x[part], labels=labels[part])
            s.evaluate(x[:4], labels=labels[:4])
            if scale == 1.0:  # the firmware's decoder on int8 outputs, top-k cut short
                q, e = s.forward_fixed(x[:4])
                detect.decode_fixed(q.reshape(4, 6, 3, 5), e, 4, k=3, threshold=0.05)
    print("ok centernet loss and decoder", flush=True)


OPTIMIZERS = [dict(lr=0.05, momentum=0.9, weight_decay=1e-4), dict(lr=1e-3, optimizer="adamw", weight_decay=0.01)]


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, make, shape, exporter in CASES:
        model = exporter(make(), torch.randn(2, *shape), dynamo=False, opset=13)
        x = rng.standard_normal((12, *shape)).astype(np.float32)
        y = rng.integers(0, 10, 12)
        for threads, opt in itertools.product((1, 2), OPTIMIZERS):
            t = intedge.Trainer(model, batch_size=8, threads=threads, **opt)
            t.fit(x, y, epochs=2, progress=False)  # a full batch and a partial one
            state = t.session.save_state()
            t.session.load_state(state)
            t.evaluate(x, y)
        print(f"ok {name}", flush=True)
    centernet_steps(rng)
    for name, graph, x, y in iem_cases(rng):
        model = intedge.Model(iem.serialize(graph))
        for threads, opt in itertools.product((1, 2), OPTIMIZERS):
            s = intedge.Session(model, batch_size=8, threads=threads, **opt)
            for b in (slice(0, 8), slice(8, 12)):  # a full batch and a partial one
                s.step(x[b], labels=y[b])
            s.load_state(s.save_state())
            s.evaluate(x[:8], labels=y[:8])
        print(f"ok {name}", flush=True)
    transformer_ops(rng)
    layernorm_extremes(rng)
    print("sanitizer smoke: all op families clean")


if __name__ == "__main__":
    main()
