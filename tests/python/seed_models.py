"""The models the loaders' tests start from: the Python mutation tests (test_mutations.py) and the
libFuzzer seed corpus (tools/fuzz/make_seeds.py). Together they use every runtime op family."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from build_cnn import build_cnn
from build_mlp import build_mlp


def rich_graph():
    """Conv, BatchNormalization, Relu, Identity, MaxPool, AveragePool, Concat, Flatten and a
    MatMul + Add (the fused nn.Linear): the ops whose attributes mutants break."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (f(4, 2, 3, 3), "conv.w"), (f(4), "conv.b"), (f(4) + 1, "bn.scale"), (f(4), "bn.bias"), (f(4), "bn.mean"),
        (np.abs(f(4)) + 1, "bn.var"), (f(32, 10), "fc.w"), (f(10), "fc.b")]]
    nodes = [helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"],
                              name="bn"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("Identity", ["r"], ["r2"], name="id"),
             helper.make_node("MaxPool", ["r2"], ["mp"], name="maxpool", kernel_shape=[3, 3], strides=[3, 3]),
             helper.make_node("AveragePool", ["r2"], ["ap"], name="avgpool", kernel_shape=[3, 3], strides=[3, 3]),
             helper.make_node("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
             helper.make_node("Flatten", ["cat"], ["flat"], name="flatten", axis=1),
             helper.make_node("MatMul", ["flat", "fc.w"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "fc.b"], ["y"], name="fc_bias")]
    graph = helper.make_graph(nodes, "rich", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def seed_onnx_models():
    """The bundled MLP (Flatten, Gemm, Relu), the CNN (Conv, MaxPool) and rich_graph."""
    return [build_mlp([64, 32, 10], input_shape=(1, 8, 8), seed=0), build_cnn(), rich_graph()]


def seed_graphs():
    """.iem graphs with no ONNX form here: a small attention block (MatMul, Transpose,
    ParamBroadcast, Concat on tokens, Add)."""
    from transformer_graphs import attention_graph

    return [attention_graph(np.random.default_rng(0), t=5, d=4, heads=2, k0=8, classes=3)]
