"""Graphs with several inputs, integer inputs, Embedding and Cast (runtime/src/ops/embedding.c):
the forward reads the table's int8 view, the backward's row gradients equal autograd's exactly,
the optimizer touches the rows the batch used and no other, and everything is bit-exact across
kernel tiers and thread counts."""
import numpy as np
import pytest
import torch

from intedge import iem
from intedge.errors import IntedgeError
from intedge.runtime import Model, Session, kernel_tiers
from op_harness import Harness

V, D, T, C = 37, 6, 5, 4


def embedding_graph(rng, const_positions=False):
    """ids [T] -> table [V, D] -> (+ a position table read with constant ids 0..T-1) -> Gemm."""
    g = iem.Graph()
    g.input = g.add_tensor("ids", iem.KIND_INPUT, (T,), ids=True)
    table = rng.standard_normal((V, D)).astype(np.float32)
    g.add_tensor("table", iem.KIND_PARAM, table.shape, table)
    g.add_tensor("emb", iem.KIND_ACTIVATION, (T, D))
    g.add_node("embed", iem.OP_EMBEDDING, ["table", "ids"], ["emb"])
    last = "emb"
    if const_positions:
        pos = rng.standard_normal((T + 3, D)).astype(np.float32)
        g.add_tensor("pos_table", iem.KIND_PARAM, pos.shape, pos)
        g.add_tensor("pos_ids", iem.KIND_PARAM, (T,), np.arange(T, dtype=np.float32), state=True)
        g.add_tensor("pos", iem.KIND_ACTIVATION, (T, D))
        g.add_node("pos_embed", iem.OP_EMBEDDING, ["pos_table", "pos_ids"], ["pos"])
        g.add_tensor("sum", iem.KIND_ACTIVATION, (T, D))
        g.add_node("add", iem.OP_BINARY, ["emb", "pos"], ["sum"], [iem.BINARY_ADD])
        last = "sum"
    g.add_tensor("flat", iem.KIND_ACTIVATION, (T * D,))
    g.add_node("flatten", iem.OP_RESHAPE, [last], ["flat"])
    w = (rng.standard_normal((C, T * D)) * 0.2).astype(np.float32)
    g.add_tensor("w", iem.KIND_PARAM, w.shape, w)
    g.add_tensor("logits", iem.KIND_ACTIVATION, (C,))
    g.add_node("fc", iem.OP_GEMM, ["flat", "w"], ["logits"], [1])
    g.output = g.index["logits"]
    return g


def test_embedding_forward_reads_rows_and_backward_updates_only_them(rng):
    g = embedding_graph(rng)
    lr_exp = -6
    h = Harness(g, batch=3, lr=2.0**lr_exp)
    ids = np.array([[3, 7, 3, 0, 36], [7, 7, 1, 2, 3], [0, 5, 5, 5, 9]], np.int32)
    w_before, we = h.session.param_fixed(0)
    dy = rng.integers(-127, 128, (3, C), dtype=np.int8)
    h.step(ids, dy, -9)

    # forward: every row is the int8 view of its table row, one exponent for the table
    emb, ee = h.tensor("emb")
    view = np.clip(np.round(w_before.astype(np.float64) * 2.0**(we - ee)), -127, 127)
    assert np.abs(emb - view[ids]).max() <= 1  # SR rounds each element up or down
    assert np.array_equal(emb[0, 0], emb[0, 2])  # a row reads the same wherever it appears

    # backward: the table's gradient is dY summed into the rows used, exact
    demb = h.value("emb", grad=True)
    ref = np.zeros((V, D))
    np.add.at(ref, ids.reshape(-1), demb.reshape(-1, D))
    w_after, we2 = h.session.param_fixed(0)
    step = (w_before * 2.0**we - w_after * 2.0**we2) / 2.0**lr_exp
    used = np.unique(ids)
    unused = np.setdiff1d(np.arange(V), used)
    np.testing.assert_allclose(step[used], ref[used], atol=2.0**(we2 + 1 - lr_exp))
    assert we2 == we and np.array_equal(w_after[unused], w_before[unused])  # untouched rows keep their bytes


def test_embedding_gradient_matches_autograd_through_the_graph(rng):
    """The whole graph (Embedding -> Add of a position table read by constant ids -> Gemm): the
    table gradients against float64 autograd from the same int8 values."""
    g = embedding_graph(rng, const_positions=True)
    h = Harness(g, batch=2, lr=2.0**-8)
    ids = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], np.int32)
    before = {p.name: h.session.param_fixed(p.index) for p in h.model.params}
    dy = rng.integers(-127, 128, (2, C), dtype=np.int8)
    h.step(ids, dy, -12)
    dsum = torch.tensor(h.value("sum", grad=True))
    # the Add's backward passes dY to both operands exactly (same exponent, no broadcast)
    for name, ids_used in (("table", ids), ("pos_table", np.tile(np.arange(T), (2, 1)))):
        ref = torch.zeros(before[name][0].shape, dtype=torch.float64)
        ref.index_add_(0, torch.tensor(ids_used.reshape(-1)), dsum.reshape(-1, D))
        index = next(p.index for p in h.model.params if p.name == name)
        w0, e0 = before[name]
        w1, e1 = h.session.param_fixed(index)
        step = (w0 * 2.0**e0 - w1 * 2.0**e1) / 2.0**-8
        np.testing.assert_allclose(step, ref.numpy(), atol=2.0**(max(e0, e1) + 9))
    # the constant ids are a frozen state parameter: never trained
    pos_ids = next(p.index for p in h.model.params if p.name == "pos_ids")
    assert np.array_equal(h.session.param_fixed(pos_ids)[0], before["pos_ids"][0])


def test_cast_mask_and_several_inputs(rng):
    """x [T, D] float and mask [T] integers: y = x * mask[:, None] through Cast and Mul."""
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (T, D))
    g.add_tensor("mask", iem.KIND_INPUT, (T, 1), ids=True)
    g.add_tensor("m8", iem.KIND_ACTIVATION, (T, 1))
    g.add_node("cast", iem.OP_CAST, ["mask"], ["m8"])
    g.add_tensor("y", iem.KIND_ACTIVATION, (T, D))
    g.add_node("mul", iem.OP_BINARY, ["x", "m8"], ["y"], [iem.BINARY_MUL])
    g.output = g.index["y"]
    h = Harness(g, batch=4)
    x = rng.standard_normal((4, T, D)).astype(np.float32)
    mask = (rng.random((4, T, 1)) < 0.6).astype(np.int64)
    h.step({"x": x, "mask": mask}, np.zeros((4, T * D), np.int8), 0)
    m8, em = h.tensor("m8")
    np.testing.assert_array_equal(m8 * 2.0**em, mask)  # 0/1 come out exact
    np.testing.assert_allclose(h.value("y"), h.value("x") * mask, atol=0)  # x times 1 or 0: exact

    s = Session(h.model, batch_size=4, lr=0.1)
    with pytest.raises(IntedgeError, match="missing"):
        s.forward({"x": x})
    with pytest.raises(IntedgeError, match="takes 2 inputs"):
        s.forward(x)
    with pytest.raises(IntedgeError, match="integers"):
        s.forward([x, mask.astype(np.float32)])


def test_ids_outside_the_table_are_refused_with_the_input_named(rng):
    s = Session(Model(iem.serialize(embedding_graph(rng))), batch_size=2, lr=0.1)
    with pytest.raises(IntedgeError, match=r"input 'ids' of sample 1 holds 37; its table has rows 0..36"):
        s.step(np.array([[1, 2, 3, 4, 5], [1, 2, 37, 4, 5]]), labels=[0, 1])
    with pytest.raises(IntedgeError, match=r"holds -1"):
        s.step(np.array([[1, 2, 3, 4, 5], [1, 2, -1, 4, 5]]), labels=[0, 1])


def test_a_float_op_reading_integers_is_refused_at_load(rng):
    g = iem.Graph()
    g.input = g.add_tensor("ids", iem.KIND_INPUT, (T,), ids=True)
    g.add_tensor("y", iem.KIND_ACTIVATION, (T,))
    g.add_node("relu", iem.OP_RELU, ["ids"], ["y"])
    g.output = g.index["y"]
    with pytest.raises(IntedgeError, match="cannot read the integer input 'ids'"):
        Model(iem.serialize(g))


def test_embedding_training_is_bit_exact_across_tiers_threads_and_momentum(rng):
    g = embedding_graph(rng, const_positions=True)
    model = Model(iem.serialize(g))
    data = np.random.default_rng(5)
    batches = [(data.integers(0, V, (6, T)), data.integers(0, C, 6))] * 8  # one batch, learnt
    digests = set()
    for tier in kernel_tiers():
        for threads in (1, 2):
            s = Session(model, batch_size=6, lr=0.05, momentum=0.9, weight_decay=1e-3, seed=4, kernels=tier,
                        threads=threads)
            losses = [s.step(x, labels=y)[0] for x, y in batches]
            digests.add(s.digest())
    assert len(digests) == 1
    assert losses[-1] < losses[0] / 2  # it learns the batch


def masked_bag_graph(rng, t, v, d, classes):
    """input_ids [T] and attention_mask [T, 1] (integers) -> Embedding -> times the mask (Cast) ->
    Gemm: a text classifier's shape, small."""
    g = iem.Graph()
    g.input = g.add_tensor("input_ids", iem.KIND_INPUT, (t,), ids=True)
    g.add_tensor("attention_mask", iem.KIND_INPUT, (t, 1), ids=True)
    g.add_tensor("table", iem.KIND_PARAM, (v, d), (rng.standard_normal((v, d)) * 0.5).astype(np.float32))
    w = (rng.standard_normal((classes, t * d)) * 0.1).astype(np.float32)
    g.add_tensor("w", iem.KIND_PARAM, w.shape, w)
    for name, shape in (("emb", (t, d)), ("m8", (t, 1)), ("masked", (t, d)), ("flat", (t * d,)),
                        ("logits", (classes,))):
        g.add_tensor(name, iem.KIND_ACTIVATION, shape)
    g.add_node("embed", iem.OP_EMBEDDING, ["table", "input_ids"], ["emb"])
    g.add_node("cast", iem.OP_CAST, ["attention_mask"], ["m8"])
    g.add_node("mask", iem.OP_BINARY, ["emb", "m8"], ["masked"], [iem.BINARY_MUL])
    g.add_node("flatten", iem.OP_RESHAPE, ["masked"], ["flat"])
    g.add_node("fc", iem.OP_GEMM, ["flat", "w"], ["logits"], [1])
    g.output = g.index["logits"]
    return g


def token_data(rng, n, t, v):
    """Sequences of 3..T tokens (padding id 0 past the length, mask 0 there); the class is whether
    token 1 or token 2 occurs first (each sequence holds one of them, at a random place)."""
    ids = rng.integers(3, v, (n, t))
    lengths = rng.integers(3, t + 1, n)
    y = rng.integers(0, 2, n)
    for i in range(n):
        ids[i, rng.integers(0, lengths[i])] = 1 + y[i]
        ids[i, lengths[i]:] = 0
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)[..., None]
    return {"input_ids": ids, "attention_mask": mask}, y


def test_trainer_takes_several_integer_inputs_by_name(rng):
    """Trainer.fit with a dict of input_ids and attention_mask: it learns the task with AdamW, the
    same bytes on 1 and 2 threads, and a wrong batch is named."""
    from intedge import Trainer
    from intedge.onnx_import import ImportedModel

    t, v, d = 8, 20, 4
    g = masked_bag_graph(rng, t, v, d, 2)
    params = [x.name for x in g.tensors if x.kind == iem.KIND_PARAM]
    model = ImportedModel(None, iem.serialize(g), "input_ids", (t,), "logits", 2, params)
    x, y = token_data(rng, 600, t, v)
    xv, yv = token_data(rng, 200, t, v)
    digests = []
    for threads in (1, 2):
        tr = Trainer(model, batch_size=16, lr=0.02, optimizer="adamw", threads=threads)
        hist = tr.fit(x, y, xv, yv, epochs=4, progress=False)
        digests.append(tr.session.digest())
    print([(round(h["train_loss"], 3), h["val_acc"]) for h in hist])
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_acc"] >= 0.9, hist
    assert digests[0] == digests[1]
    assert tr.predict(xv).shape == (200, 2)
    with pytest.raises(IntedgeError, match="pass a dict of arrays by input name"):
        tr.fit(x["input_ids"], y, epochs=5, progress=False)
    with pytest.raises(IntedgeError, match="missing attention_mask"):
        tr.evaluate({"input_ids": xv["input_ids"]}, yv)
    with pytest.raises(IntedgeError, match="'input_ids' takes integers"):
        tr.evaluate({**xv, "input_ids": xv["input_ids"].astype(np.float32)}, yv)
    with pytest.raises(IntedgeError, match=r"input_ids. holds 858993\d{4}, beyond int32"):  # not wrapped
        tr.evaluate({**xv, "input_ids": xv["input_ids"] + 2**33 * (np.arange(t) == 0)}, yv)
    with pytest.raises(IntedgeError, match="different numbers of samples"):
        tr.evaluate({**xv, "attention_mask": xv["attention_mask"][:5]}, yv)


class TokenClassifier(torch.nn.Module):
    """Token and position embeddings (position ids a constant [1, T], as BERT writes them), a
    token-type embedding read by zeros repeated over the batch, and a Linear head."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos, self.typ = torch.nn.Embedding(V, D), torch.nn.Embedding(T + 2, D), torch.nn.Embedding(2, D)
        self.fc = torch.nn.Linear(T * D, C)

    def forward(self, ids):
        zeros = torch.zeros(1, T, dtype=torch.long).expand(ids.shape[0], T)
        x = self.tok(ids) + self.pos(torch.arange(T).unsqueeze(0)) + self.typ(zeros)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic_batch", "fixed_batch"])
def test_gather_on_a_weight_table_imports_as_embedding(tmp_path, dynamic):
    """ONNX Gather on an initializer by an int64 input (token ids) or by constant ids (positions,
    token types repeated over the batch) imports as Embedding and agrees with onnxruntime."""
    import onnx
    import onnxruntime as ort

    from intedge.onnx_import import Walker
    torch.manual_seed(0)
    path = tmp_path / "emb.onnx"
    torch.onnx.export(TokenClassifier(), (torch.zeros(3, T, dtype=torch.long),), str(path), opset_version=17,
                      dynamo=False, input_names=["ids"], dynamic_axes={"ids": {0: "N"}} if dynamic else None)
    w = Walker(onnx.load(str(path)), "emb")
    g = Model(w.run().iem)
    assert [i.ids for i in g.inputs] == [True]
    assert sum(n.op == iem.OP_EMBEDDING for n in w.graph.nodes) == 3
    ids = np.random.default_rng(1).integers(0, V, (3, T))
    got = Session(g, batch_size=3, lr=0.0).forward(ids)
    ref = ort.InferenceSession(onnx.load(str(path)).SerializeToString()).run(None, {"ids": ids})[0]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
