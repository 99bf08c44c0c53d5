"""What attention's two activation products (S = Q . K^T, O = S . V) cost in a training step:
forward and backward (both operands' gradients), intedge's MatMul against PyTorch fp32, one thread
unless told otherwise.

    python tools/bench/attention_matmul.py                          # N=16, 4 heads, T=65, d=16
    python tools/bench/attention_matmul.py --batch 32 --heads 3 --tokens 197 --dim 64 --threads 2

intedge runs a real session (Q, K, V from Gemm nodes on tokens, heads by Transpose) for one step,
then times the two MatMul nodes alone (ie_test_run_node); torch times the same products on fp32
tensors of the same shapes."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench import median_ms  # tools/bench/bench.py, beside this file: (median, min, max) in ms


ROOT = Path(__file__).resolve().parents[2]


def attention_products_graph(tokens, heads, dim):
    """x [T, h d] -> Q, K, V (Gemm on tokens) -> [h, T, d] -> S = Q . K^T -> O = S . V (the output)."""
    from intedge import iem
    rng = np.random.default_rng(0)
    g = iem.Graph()
    width = heads * dim
    g.input = g.add_tensor("x", iem.KIND_INPUT, (tokens, width))
    for name in "qkv":
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        g.add_tensor(f"{name}.w", iem.KIND_PARAM, w.shape, w)
        for suffix, shape in (("tokens", (tokens, width)), ("split", (tokens, heads, dim)), ("", (heads, tokens, dim))):
            g.add_tensor(f"{name}.{suffix}" if suffix else name, iem.KIND_ACTIVATION, shape)
        g.add_node(f"{name}.gemm", iem.OP_GEMM, ["x", f"{name}.w"], [f"{name}.tokens"], [1, tokens])
        g.add_node(f"{name}.reshape", iem.OP_RESHAPE, [f"{name}.tokens"], [f"{name}.split"])
        g.add_node(f"{name}.heads", iem.OP_TRANSPOSE, [f"{name}.split"], [name], [1, 0, 2])
    g.add_tensor("s", iem.KIND_ACTIVATION, (heads, tokens, tokens))
    g.add_tensor("o", iem.KIND_ACTIVATION, (heads, tokens, dim))
    g.add_node("qk", iem.OP_MATMUL, ["q", "k"], ["s"], [0, 1])
    g.add_node("sv", iem.OP_MATMUL, ["s", "v"], ["o"], [0, 0])
    g.output = g.index["o"]
    return g


def bench_intedge(batch, heads, tokens, dim, threads):
    sys.path.insert(0, str(ROOT / "tests" / "python"))
    from intedge import iem
    from intedge._ffi import lib
    from op_harness import Harness
    g = attention_products_graph(tokens, heads, dim)
    h = Harness(g, batch, lr=0.0, threads=threads)
    rng = np.random.default_rng(1)
    h.step(rng.standard_normal((batch, tokens, heads * dim)).astype(np.float32),
           rng.integers(-127, 128, (batch, heads, tokens, dim), dtype=np.int8), -10)
    nodes = [i for i, n in enumerate(g.nodes) if n.op == iem.OP_MATMUL]

    def run(backward, which=nodes):
        for i in which:
            assert lib.ie_test_run_node(h.session._h, i, backward) == lib.IE_OK
    per_node = {f"{g.nodes[i].name} {part}": median_ms(lambda: run(b, [i]), reps=21)[0]
                for i in nodes for b, part in ((0, "forward"), (1, "backward"))}
    return {"forward_ms": median_ms(lambda: run(0), reps=21)[0], "backward_ms": median_ms(lambda: run(1), reps=21)[0],
            "kernels": h.session.kernels, "per_node_ms": per_node}


def bench_torch(batch, heads, tokens, dim, threads):
    import torch
    torch.set_num_threads(threads)
    q, k, v = (torch.randn(batch, heads, tokens, dim, requires_grad=True) for _ in range(3))
    grad = torch.randn(batch, heads, tokens, dim)

    def forward():
        return (q @ k.transpose(-1, -2)) @ v

    def step():
        forward().backward(grad)
    fwd = median_ms(forward, reps=21)[0]  # recording the graph for backward, as in training
    full = median_ms(step, reps=21)[0]
    return {"forward_ms": fwd, "backward_ms": full - fwd}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=65)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    shape = (a.batch, a.heads, a.tokens, a.dim)
    ie, pt = bench_intedge(*shape, a.threads), bench_torch(*shape, a.threads)
    macs = 2 * a.batch * a.heads * a.tokens * a.tokens * a.dim  # per pass of the two products
    print(f"N={a.batch} heads={a.heads} T={a.tokens} d={a.dim}, {a.threads} thread(s); "
          f"{macs / 1e6:.1f} M multiply-adds per pass (forward, dA, dB)")
    print(f"{'':10} {'forward ms':>10} {'backward ms':>11} {'step ms':>8} {'GMAC/s':>7}")
    for name, r in (("intedge", ie), ("torch fp32", pt)):
        total = r["forward_ms"] + r["backward_ms"]
        print(f"{name:10} {r['forward_ms']:10.3f} {r['backward_ms']:11.3f} {total:8.3f} {3 * macs / total / 1e6:7.1f}")
    ratio = (ie["forward_ms"] + ie["backward_ms"]) / (pt["forward_ms"] + pt["backward_ms"])
    print(f"intedge / torch: {ratio:.2f}x (kernels: {ie['kernels']})")
    print("intedge per node (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in ie["per_node_ms"].items()))
    if a.json:
        Path(a.json).write_text(json.dumps({"shape": shape, "threads": a.threads, "intedge": ie, "torch": pt,
                                            "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
