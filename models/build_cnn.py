"""Builds a small CNN for 8x8 digits with onnx.helper, the microcontroller demo's model:
conv(1->8, 3x3) relu maxpool2, conv(8->16, 3x3) relu maxpool2, flatten, fc(64->10).
Run from the repo root: python models/build_cnn.py -o cnn_digits.onnx
Weights use PyTorch's default (Kaiming uniform, a=sqrt(5)) init, seeded."""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from build_mlp import checked_model  # models/ is on the path when this file runs as a script


def uniform(rng, fan_in, shape):
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def build_cnn(seed=0, width=8):
    rng = np.random.default_rng(seed)
    c1, c2 = width, 2 * width
    inits = [numpy_helper.from_array(uniform(rng, 9, (c1, 1, 3, 3)), "conv1.weight"),
             numpy_helper.from_array(uniform(rng, 9, (c1,)), "conv1.bias"),
             numpy_helper.from_array(uniform(rng, 9 * c1, (c2, c1, 3, 3)), "conv2.weight"),
             numpy_helper.from_array(uniform(rng, 9 * c1, (c2,)), "conv2.bias"),
             numpy_helper.from_array(uniform(rng, 4 * c2, (10, 4 * c2)), "fc.weight"),
             numpy_helper.from_array(uniform(rng, 4 * c2, (10,)), "fc.bias")]
    nodes = []
    cur = "input"
    for i in (1, 2):
        nodes += [helper.make_node("Conv", [cur, f"conv{i}.weight", f"conv{i}.bias"], [f"c{i}"], name=f"conv{i}",
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
                  helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], name=f"pool{i}", kernel_shape=[2, 2],
                                   strides=[2, 2])]
        cur = f"p{i}"
    nodes += [helper.make_node("Flatten", [cur], ["flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1)]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    return checked_model(helper.make_graph(nodes, "cnn_digits", [x], [y], inits))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", default="models/cnn_digits.onnx")
    args = ap.parse_args()
    onnx.save(build_cnn(), args.o)
    print(f"wrote {args.o}")
