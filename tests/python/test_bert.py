"""A BERT-style encoder through the importer (docs/transformers.md, "BERT"): transformers' BertModel
with a small config, masked mean pooling and a Linear head, exported with input_ids and
attention_mask by TorchScript (opset 17, dynamic batch), dynamo (opset 18, dynamic batch) and
TorchScript with the export batch baked in. The data are scikit-learn's digits read as token
sequences: each 8x8 image is the sequence of its inked pixels (intensity above 8), each token the
pixel's position 1..64 (0 pads), 10 to 27 tokens a digit, padded to 32 with attention_mask 0."""
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_cli
from torch_models import BertClassifier
from intedge import iem
from intedge.errors import IntedgeError
from intedge.inspect_model import trainable_flags
from intedge.onnx_import import Walker
from intedge.runtime import Model, Session

transformers = pytest.importorskip("transformers")

T, V, CLASSES, EXPORT_BATCH = 32, 65, 10, 3
TRAINED = ("*layer.1*", "*head*")  # the head and the last encoder layer; the embeddings and layer 0 are frozen


def digit_tokens():
    """(input_ids [n, T], attention_mask [n, T], labels): the positions 1..64 of the pixels above 8 in
    reading order, then padding (id 0, mask 0)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    ids, mask = np.zeros((len(d.target), T), np.int64), np.zeros((len(d.target), T), np.int64)
    for i, image in enumerate(d.data):
        inked = np.flatnonzero(image > 8)[:T] + 1
        ids[i, :len(inked)], mask[i, :len(inked)] = inked, 1
    return ids, mask, d.target.astype(np.int64)


def fresh_model(seed=0):
    """Every weight drawn apart (the dynamo exporter stores equal initializers once, which the
    importer cannot tell from tying: docs/transformers.md)."""
    torch.manual_seed(seed)
    model = BertClassifier(V, T, CLASSES).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
        # tokens drawn at std 1 (BERT's 0.02, and its padding row of zeros, leave the untrained
        # attention nearly uniform: attending to padding would barely show in the logits)
        model.bert.embeddings.word_embeddings.weight.normal_(0, 1, generator=g)
    return model


def export(model, path, kind):
    ids = torch.zeros(EXPORT_BATCH, T, dtype=torch.long)
    args, names = (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"]
    if kind == "dynamo-18":
        n = torch.export.Dim("N", min=2, max=4096)
        torch.onnx.export(model, args, str(path), dynamo=True, opset_version=18, input_names=names,
                          output_names=["logits"], dynamic_shapes=({0: n}, {0: n}))
    else:
        axes = {v: {0: "N"} for v in names + ["logits"]} if kind == "torchscript-17" else None
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names,
                          output_names=["logits"], dynamic_axes=axes)
    return path


EXPORTS = ("torchscript-17", "dynamo-18", "torchscript-17-fixed-batch")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    model = fresh_model()
    d = tmp_path_factory.mktemp("bert")
    return model, {kind: export(model, d / f"{kind}.onnx", kind) for kind in EXPORTS}


@pytest.fixture(scope="module")
def tokens():
    return digit_tokens()


def walk(path):
    w = Walker(onnx.load(str(path)), str(path))
    imported = w.run()
    return w, imported, Counter(iem.OP_NAMES[n.op] for n in w.graph.nodes)


@pytest.mark.parametrize("kind", EXPORTS)
def test_bert_forward_agrees_with_onnxruntime(bert, tokens, kind, capsys):
    """Every export imports to the same runtime ops (the attention mask is the Softmax's mask input,
    the masked mean a Softmax of the mask and a MatMul) and its forward agrees with onnxruntime on
    96 digits of 10 to 27 tokens, at a batch other than the export's."""
    _, paths = bert
    w, imported, ops = walk(paths[kind])
    # dynamo folds the position embedding's Gather of 0..T-1 into an initializer [1, T, D]: a trained Add
    assert ops["EMBEDDING"] == (2 if kind == "dynamo-18" else 3) and ops["CAST"] == 1 and ops["SOFTMAX"] == 3 and ops["LAYERNORM"] == 5
    assert ops["MATMUL"] == 5 and ops["ACTIVATION"] == 2
    assert imported.export_batch == (EXPORT_BATCH if kind.endswith("fixed-batch") else None)
    ids, mask, _ = tokens
    ids, mask = ids[:96], mask[:96]
    # every Softmax reads the mask: the two attentions' and the pooling's
    assert sum(n.op == iem.OP_SOFTMAX and len(n.inputs) == 2 for n in w.graph.nodes) == 3
    feeds = {"input_ids": ids, "attention_mask": mask}
    # tokens under mask 0 must not matter: ours reads random ones there, onnxruntime zeros
    noise = np.random.default_rng(1).integers(1, V, ids.shape)
    got = Session(Model(imported.iem), batch_size=len(ids), lr=0.0).forward(
        {"input_ids": np.where(mask == 1, ids, noise), "attention_mask": mask})
    sess = ort.InferenceSession(str(paths[kind]))
    step = EXPORT_BATCH if imported.export_batch else len(ids)
    ref = np.concatenate([sess.run(None, {k: v[i:i + step] for k, v in feeds.items()})[0]
                          for i in range(0, len(ids), step)])
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    top1 = float((got.argmax(1) == ref.argmax(1)).mean())
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    with capsys.disabled():
        print(f"\n{kind}: max error / max |logit| {err:.3f}, lowest cosine {cos.min():.4f}, top-1 agreement {top1:.3f}")
    # an untrained model's logits lie close together: top-1 flips on small errors
    assert cos.min() >= 0.99 and err < 0.07 and top1 >= 0.85


def torch_losses(model, batches, lr):
    """AdamW on the head and the last encoder layer in float32 autograd, on the same batches."""
    params = [p for name, p in model.named_parameters() if "layer.1" in name or "head" in name]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for ids, mask, y in batches:
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(ids), torch.tensor(mask)), torch.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bert_fine_tuning_follows_autograd(bert, tokens, capsys):
    """40 AdamW steps on the head and the last encoder layer (the prefix frozen: it stores nothing
    for backward), batches of 32 digits, from the same weights as PyTorch float32 autograd on the
    same batches: the loss falls like autograd's."""
    model, paths = bert
    ids, mask, y = tokens
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    batches = [(ids[i], mask[i], y[i]) for i in (order[k * 32:(k + 1) * 32] for k in range(40))]
    lr = 1e-2
    _, imported, _ = walk(paths["torchscript-17"])
    flags = trainable_flags(imported, list(TRAINED))
    assert 0 < sum(flags) < len(flags)
    s = Session(Model(imported.iem), batch_size=32, lr=lr, optimizer="adamw", trainable=flags, weight_decay=0.0)
    ours = [s.step({"input_ids": a, "attention_mask": m}, t)[0] / len(t) for a, m, t in batches]
    ref = torch_losses(model, batches, lr)
    first, last = np.mean(ours[:5]), np.mean(ours[-5:])
    first_ref, last_ref = np.mean(ref[:5]), np.mean(ref[-5:])
    with capsys.disabled():
        print(f"\nloss over the first / last 5 steps: intedge {first:.3f} -> {last:.3f}, "
              f"autograd {first_ref:.3f} -> {last_ref:.3f}; worst gap per step "
              f"{max(abs(a - b) for a, b in zip(ours, ref)):.3f}")
    # measured: 2.266 -> 0.991 against 2.266 -> 0.978, worst gap 0.055
    assert last < 0.8 * first and last_ref < 0.8 * first_ref
    assert abs(last - last_ref) < 0.05 + 0.05 * last_ref
    assert all(abs(a - b) < 0.1 for a, b in zip(ours, ref))


def test_inspect_reports_a_multi_input_bert(bert):
    """inspect on the two-input model: every node supported, the memory plan, and for the fixed-batch
    export what the importer did with the baked batch."""
    _, paths = bert
    r = run_cli("inspect", paths["torchscript-17"])
    assert r.returncode == 0, r.stderr
    assert "NO:" not in r.stdout and "training arena at batch 32" in r.stdout and "fixed batch" not in r.stdout
    r = run_cli("inspect", paths["torchscript-17-fixed-batch"])
    assert r.returncode == 0 and f"exported with a fixed batch of {EXPORT_BATCH}" in r.stdout


def test_inspect_gives_the_whole_graph_refusal_train_gives(bert, tmp_path):
    """A refusal of the graph rather than of a node (here a second output) is printed with its reason,
    as train gives it, not as '0 node(s) cannot be trained'."""
    _, paths = bert
    model = onnx.load(str(paths["torchscript-17"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("/Div_output_0", onnx.TensorProto.FLOAT, None))
    path = tmp_path / "two_outputs.onnx"
    onnx.save(model, str(path))
    train = run_cli("train", path, "builtin:digits")
    r = run_cli("inspect", path)
    assert train.returncode == 2 and "the graph has 2 outputs; intedge trains models with one" in train.stderr
    assert "cannot be trained: " in r.stdout and "the graph has 2 outputs; intedge trains models with one" in r.stdout
    assert "0 node(s)" not in r.stdout


def test_an_unsupported_mask_is_refused_naming_the_node(bert, tmp_path):
    """A mask multiplied into the scores (not added) and an op the runtime lacks on the mask path:
    train refuses with one line per node naming it, and inspect says the same."""
    _, paths = bert
    model = onnx.load(str(paths["torchscript-17"]))
    adds = [n for n in model.graph.node if n.op_type == "Add" and n.name.endswith("attention/self/Add")]
    adds[0].op_type = "Mul"
    path = tmp_path / "mul_mask.onnx"
    onnx.save(model, str(path))
    with pytest.raises(IntedgeError) as e:
        Walker(onnx.load(str(path)), "m").run()
    lines = [line for line in str(e.value).splitlines() if line.startswith("  node")]
    assert lines == [f"  node '{adds[0].name}' (Mul): it multiplies an activation by '/bert/Where_1_output_0', "
                     "computed from an integer input; only a masked mean over the tokens (h * m summed over axis 1, "
                     "divided by the sum of m) is supported"]
    r = run_cli("train", path, "builtin:digits")
    assert r.returncode == 2 and adds[0].name in r.stderr and "Traceback" not in r.stderr
    r = run_cli("inspect", path)
    assert "NO: it multiplies an activation by" in r.stdout and "1 node(s) cannot be trained" in r.stdout
