"""A float32 numpy trainer for Gemm/Relu/Flatten MLPs, the reference that integer training is
compared against: same initial weights, same data order, same SGD (PyTorch semantics)."""
import numpy as np
from onnx import numpy_helper


class FloatMLP:
    def __init__(self, onnx_model):
        g = onnx_model.graph
        inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
        self.layers = []  # ("gemm", w_name, b_name, trans_b) or ("relu",)
        self.params = {}
        for n in g.node:
            if n.op_type == "Gemm":
                trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
                self.layers.append(("gemm", n.input[1], n.input[2], trans_b))
                self.params[n.input[1]] = inits[n.input[1]].copy()
                self.params[n.input[2]] = inits[n.input[2]].copy()
            elif n.op_type == "Relu":
                self.layers.append(("relu",))
            elif n.op_type != "Flatten":
                raise ValueError(n.op_type)
        self.velocity = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, keep=False):
        acts = [x]
        for layer in self.layers:
            if layer[0] == "gemm":
                w = self.params[layer[1]]
                x = x @ (w.T if layer[3] else w) + self.params[layer[2]]
            else:
                x = np.maximum(x, 0)
            acts.append(x)
        return (x, acts) if keep else x

    def step(self, x, y, lr, momentum=0.0, weight_decay=0.0):
        logits, acts = self.forward(x, keep=True)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        g = p.copy()
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer[0] == "relu":
                g = g * (acts[i + 1] > 0)
                continue
            w = self.params[layer[1]]
            dw = g.T @ acts[i]
            grads[layer[1]] = dw if layer[3] else dw.T
            grads[layer[2]] = g.sum(axis=0)
            g = g @ (w if layer[3] else w.T)
        for k, gr in grads.items():
            gr = gr + weight_decay * self.params[k]
            self.velocity[k] = momentum * self.velocity[k] + gr if momentum else gr
            self.params[k] -= lr * self.velocity[k]

    def accuracy(self, x, y):
        return float((self.forward(x).argmax(axis=1) == y).mean())
