"""Builds the bundled MLP models with onnx.helper. Run from the repo root:
    python models/build_mlp.py
Weights use PyTorch's nn.Linear default init (Kaiming uniform, a=sqrt(5)), seeded."""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_init(rng, fan_in, fan_out):
    bound = 1.0 / np.sqrt(fan_in)  # what kaiming_uniform_(a=sqrt(5)) and the bias init reduce to
    w = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
    return w, b


def build_mlp(sizes, input_shape=None, seed=0, name="mlp"):
    """An MLP with Gemm(transB=1) + Relu layers, like torch.nn.Linear exported. With an image
    input_shape (e.g. (1, 8, 8)) the graph starts with a Flatten."""
    rng = np.random.default_rng(seed)
    input_shape = tuple(input_shape or (sizes[0],))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])
    nodes, inits, cur = [], [], "input"
    if len(input_shape) > 1:
        nodes.append(helper.make_node("Flatten", [cur], ["flat"], name="flatten", axis=1))
        cur = "flat"
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        w, b = linear_init(rng, fi, fo)
        inits += [numpy_helper.from_array(w, f"fc{i + 1}.weight"), numpy_helper.from_array(b, f"fc{i + 1}.bias")]
        out = "logits" if i == len(sizes) - 2 else f"fc{i + 1}"
        nodes.append(helper.make_node("Gemm", [cur, f"fc{i + 1}.weight", f"fc{i + 1}.bias"], [out],
                                      name=f"fc{i + 1}", transB=1))
        cur = out
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{i + 1}"], name=f"relu{i + 1}"))
            cur = f"relu{i + 1}"
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", sizes[-1]])
    return checked_model(helper.make_graph(nodes, name, [x], [y], inits))


def checked_model(graph):
    """Opset 13 and IR 8, what every onnxruntime and torch of the last years reads."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="intedge")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", default="models/mlp_digits.onnx")
    ap.add_argument("--sizes", default="64,128,10", help="layer widths (64,32,10 fits a 64 KB microcontroller)")
    args = ap.parse_args()
    onnx.save(build_mlp([int(v) for v in args.sizes.split(",")], input_shape=(1, 8, 8), seed=0), args.o)
    print(f"wrote {args.o}")
