"""Text data: a CSV of real text through a tokenizers JSON file, token ids in a .npz, fitted to a
text model's integer inputs (input_ids, attention_mask, token_type_ids); every user error one line.

The corpus is real English that exists offline: the docstrings of Python standard-library
functions and methods, labelled by their module. The tokenizer is trained on it in the test."""
import csv
import importlib
import inspect
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import intedge
from intedge import text
from intedge.onnx_import import Walker
from intedge.runtime import InputInfo

from conftest import assert_user_error, run_cli

tokenizers = pytest.importorskip("tokenizers")

MODULES = ("math", "logging", "tarfile", "pathlib", "calendar")


def stdlib_docstrings():
    """(docstring, module) of the public functions and methods each module defines, sorted."""
    rows = set()
    for name in MODULES:
        mod = importlib.import_module(name)
        for attr, obj in inspect.getmembers(mod):
            members = [obj] + ([m for a, m in inspect.getmembers(obj) if not a.startswith("_")]
                               if inspect.isclass(obj) else [])
            for m in members:
                doc = inspect.getdoc(m) if callable(m) else None
                if not attr.startswith("_") and doc and getattr(m, "__module__", None) == name:
                    rows.add((" ".join(doc.split()), name))
    return sorted(rows)


def write_corpus(path):
    rows = stdlib_docstrings()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return rows


def train_tokenizer(texts, path, vocab=400):
    """A WordLevel tokenizer (lowercased words and punctuation) trained on texts, saved as JSON."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab, special_tokens=["[PAD]", "[UNK]"]))
    tok.save(str(path))
    return tok


def infos(seq_len, *names):
    """Runtime input infos of a text model with integer inputs `names`."""
    return [InputInfo(i, n, (seq_len,), seq_len, True) for i, n in enumerate(names)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    rows = write_corpus(root / "docs.csv")
    tok = train_tokenizer([t for t, _ in rows], root / "tokenizer.json")
    return root, rows, tok


def test_the_corpus_is_real_text_of_every_module(corpus):
    _, rows, _ = corpus
    counts = {m: sum(1 for _, lab in rows if lab == m) for m in MODULES}
    assert min(counts.values()) >= 30, counts
    assert any("logarithm" in t for t, lab in rows if lab == "math")


def test_csv_text_is_the_tokenizers_own_encoding_padded_and_truncated(corpus):
    root, rows, tok = corpus
    seq = 12
    inputs = text.TextInputs(*infos(seq, "input_ids", "attention_mask", "token_type_ids"))
    ds = text.load_text_csv(root / "docs.csv", "text", "label", root / "tokenizer.json", inputs, seed=0)
    assert ds.class_names == sorted(MODULES)
    x = intedge.data.concat(ds.x_train, ds.x_val)
    assert len(x) == len(rows) == len(ds.y_train) + len(ds.y_val)
    ids, mask, types = (x.arrays[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
    assert ids.shape == mask.shape == types.shape == (len(rows), seq)
    assert not types.any()
    # every sample, found by its own encoding: the tokenizer's ids cut to seq, then [PAD] (id 0) under a zero mask
    by_text = {tuple(e.ids[:seq] + [0] * (seq - len(e.ids[:seq]))): len(e.ids) for e in
               tok.encode_batch([t for t, _ in rows])}
    for r in range(len(ids)):
        length = by_text[tuple(ids[r])]
        assert mask[r].tolist() == [1] * min(length, seq) + [0] * (seq - min(length, seq))
    lengths = mask.sum(1)
    assert lengths.min() < seq and lengths.max() == seq  # both padding and truncation happened
    labels = np.concatenate([ds.y_train, ds.y_val])
    assert np.bincount(labels).tolist() == [sum(1 for _, lab in rows if lab == m) for m in sorted(MODULES)]


def test_the_encoding_keeps_the_tokenizers_own_padding_and_leaves_it_unchanged(corpus):
    _, rows, tok = corpus
    ids, mask = text.encode(tok, ["the logarithm of x", rows[0][0]], 6)
    expect = tok.encode("the logarithm of x").ids
    assert ids[0].tolist() == expect + [0] * (6 - len(expect)) and mask[0].tolist() == [1] * len(expect) + [0] * 2
    assert ids[1].tolist() == tok.encode(rows[0][0]).ids[:6] and mask[1].all()
    assert tok.padding is None and tok.truncation is None  # the caller's tokenizer is untouched


def test_a_model_with_only_token_ids_gets_only_them(corpus):
    root, _, _ = corpus
    ds = text.load_text_csv(root / "docs.csv", "text", "label", root / "tokenizer.json",
                            text.TextInputs(*infos(8, "ids")), seed=0)
    assert list(ds.x_train.arrays) == ["ids"]


def test_npz_token_ids_with_and_without_a_mask(tmp_path):
    inputs = text.TextInputs(*infos(4, "input_ids", "attention_mask", "token_type_ids"), rows=10)
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0], [9, 9, 9, 9]] * 4)
    mask = (ids > 0).astype(np.int64)
    np.savez(tmp_path / "t.npz", input_ids=ids, attention_mask=mask, labels=np.arange(12) % 2)
    ds = text.load_text_npz(dict(np.load(tmp_path / "t.npz")), inputs, "t.npz", val_fraction=0.25)
    x = intedge.data.concat(ds.x_train, ds.x_val)
    order = np.argsort(np.concatenate([ds.y_train, ds.y_val]), kind="stable")
    assert sorted(map(tuple, x.arrays["input_ids"])) == sorted(map(tuple, ids))
    np.testing.assert_array_equal(x.arrays["attention_mask"], (x.arrays["input_ids"] > 0))
    assert not x.arrays["token_type_ids"].any() and len(order) == 12
    no_mask = text.arrays_for(inputs, ids)
    assert no_mask["attention_mask"].all()  # no mask given: every token counts


def test_npz_route_through_load_data_needs_the_model(tmp_path):
    np.savez(tmp_path / "t.npz", input_ids=np.zeros((4, 3), np.int64), labels=np.zeros(4))
    with pytest.raises(intedge.IntedgeError, match="pass the model"):
        intedge.load_data(tmp_path / "t.npz")


@pytest.mark.parametrize("case, needle", [
    ("wide", "3 token ids per sample, but the model's 'input_ids' takes 4; pad or truncate"),
    ("big", "sample 1 holds token id 10, but the model's embedding table has 10 rows"),
    ("negative", "token id -1 is negative"),
    ("float", "must be an integer array"),
    ("labels", "no labels"),
    ("count", "input_ids has 2 samples but labels has 3"),
])
def test_npz_errors(tmp_path, case, needle):
    inputs = text.TextInputs(*infos(4, "input_ids"), rows=10)
    ids = {"wide": np.ones((2, 3), np.int64), "big": np.array([[1, 2, 3, 4], [1, 10, 0, 0]]),
           "negative": np.array([[1, -1, 0, 0]] * 2), "float": np.ones((2, 4))}.get(case, np.ones((2, 4), np.int64))
    arrays = {"input_ids": ids, "labels": np.arange(3 if case == "count" else 2)}
    if case == "labels":
        del arrays["labels"]
    with pytest.raises(intedge.IntedgeError, match="^[^\n]*" + needle.replace("(", r"\(")):
        text.load_text_npz(arrays, inputs, "t.npz")


def test_text_needs_a_model_with_integer_token_ids():
    with pytest.raises(intedge.IntedgeError, match="input 'input' takes float data, not token ids"):
        text.text_inputs([InputInfo(0, "input", (8,), 8, False)], helper.make_model(helper.make_graph([], "g", [], [])))
    with pytest.raises(intedge.IntedgeError, match="include no token ids input"):
        text.text_inputs(infos(4, "attention_mask"), helper.make_model(helper.make_graph([], "g", [], [])))


def embedding_graph(seq="T", rows=50, via_cast=True):
    """input_ids [N, seq] -> (Cast) -> Gather on a [rows, 4] table -> Flatten: an ONNX model to read."""
    nodes = [helper.make_node("Cast", ["input_ids"], ["ids32"], to=TensorProto.INT32)] if via_cast else []
    nodes.append(helper.make_node("Gather", ["table", "ids32" if via_cast else "input_ids"], ["e"]))
    nodes.append(helper.make_node("Flatten", ["e"], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", seq])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])],
                          [helper.make_tensor("table", TensorProto.FLOAT, [rows, 4], np.zeros(rows * 4).tolist())])
    return helper.make_model(g)


def test_the_embedding_tables_rows_are_read_through_casts():
    assert text.embedding_rows(embedding_graph(rows=37), "input_ids") == 37
    assert text.embedding_rows(embedding_graph(rows=21, via_cast=False), "input_ids") == 21
    assert text.embedding_rows(embedding_graph(), "attention_mask") is None


def test_a_sequence_length_that_is_not_fixed_is_refused():
    with pytest.raises(intedge.IntedgeError, match="input 'input_ids' has shape \\['N', 'T'\\], so its sequence "
                                                   "length is unknown; export the model with a fixed"):
        intedge.import_onnx(embedding_graph(seq="T"))
    fixed = embedding_graph(seq=16)
    Walker(fixed, "m.onnx").add_input(fixed.graph.input[0])  # a fixed length is taken


def test_tokenizer_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "Nonsense"}}')
    with pytest.raises(intedge.IntedgeError, match="bad.json is not a readable tokenizers JSON file"):
        text.load_tokenizer(bad)
    with pytest.raises(intedge.IntedgeError, match="no such file"):
        text.load_tokenizer(tmp_path / "missing.json")
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    with pytest.raises(intedge.IntedgeError, match=r"needs the tokenizers package; install it with: pip install "
                                                   r"'intedge\[text\]'"):
        text.load_tokenizer(bad)


def test_csv_column_errors(corpus):
    root, _, _ = corpus
    inputs = text.TextInputs(*infos(8, "input_ids"))
    with pytest.raises(intedge.IntedgeError, match="no column named 'body' \\(--text-column\\); columns are: text, "
                                                   "label"):
        text.load_text_csv(root / "docs.csv", "body", "label", root / "tokenizer.json", inputs)
    with pytest.raises(intedge.IntedgeError, match="name the label column with --label-column"):
        text.load_text_csv(root / "docs.csv", "text", None, root / "tokenizer.json", inputs)
    with pytest.raises(intedge.IntedgeError, match="needs --tokenizer"):
        text.load_text_csv(root / "docs.csv", "text", "label", None, inputs)


def test_cli_refuses_text_for_a_model_without_token_ids(corpus):
    from conftest import ROOT

    root, _, _ = corpus
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", root / "docs.csv", "--text-column", "text",
                  "--label-column", "label", "--tokenizer", root / "tokenizer.json", "--output-dir", root / "run")
    assert_user_error(res, "input 'input' takes float data, not token ids")


def test_cli_refuses_a_model_whose_sequence_length_is_unknown(corpus, tmp_path):
    root, _, _ = corpus
    onnx.save(embedding_graph(seq="T"), tmp_path / "m.onnx")
    res = run_cli("train", tmp_path / "m.onnx", root / "docs.csv", "--text-column", "text", "--label-column", "label",
                  "--tokenizer", root / "tokenizer.json", "--output-dir", tmp_path / "run")
    assert_user_error(res, "input 'input_ids' has shape ['N', 'T'], so its sequence length is unknown")


def test_cli_text_options_are_for_a_csv(corpus):
    from conftest import ROOT

    root, _, _ = corpus
    res = run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--tokenizer",
                  root / "tokenizer.json", "--output-dir", root / "run")
    assert_user_error(res, "--text-column and --tokenizer read a .csv of text")


class MeanEmbedding(__import__("torch").nn.Module):
    """An embedding bag: the mean of the token embeddings over the sequence (pads included: the
    importer takes one graph input), then a Linear head."""

    def __init__(self, vocab, width=16, classes=len(MODULES)):
        import torch
        super().__init__()
        self.emb, self.fc = torch.nn.Embedding(vocab, width), torch.nn.Linear(width, classes)

    def forward(self, ids):
        import torch
        pooled = torch.nn.functional.adaptive_avg_pool2d(self.emb(ids).transpose(1, 2).unsqueeze(-1), 1)
        return self.fc(pooled.flatten(1))


def export_text_model(path, vocab, seq_len=32):
    import torch
    torch.manual_seed(0)
    torch.onnx.export(MeanEmbedding(vocab), (torch.zeros(2, seq_len, dtype=torch.long),), str(path),
                      opset_version=17, dynamo=False, input_names=["input_ids"],
                      dynamic_axes={"input_ids": {0: "N"}})
    return path


def train_on_docstrings(corpus, model, names, tmp_path, epochs, lr):
    """`intedge train` on the docstring CSV through the tokenizer (AdamW, batch 16), then `intedge
    eval` and onnxruntime on the exported model: (metrics per epoch, the val split as the CLI
    encodes it, the majority class's share of it, eval's accuracy, onnxruntime's accuracy)."""
    import json

    import onnxruntime as ort
    root = corpus[0]
    text_args = ["--text-column", "text", "--label-column", "label", "--tokenizer", root / "tokenizer.json"]
    res = run_cli("train", model, root / "docs.csv", *text_args, "--epochs", str(epochs), "--optimizer", "adamw",
                  "--lr", str(lr), "--batch-size", "16", "--output-dir", tmp_path / "run", "--quiet")
    assert res.returncode == 0, res.stderr
    hist = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ds = text.load_text_csv(root / "docs.csv", "text", "label", root / "tokenizer.json",
                            text.TextInputs(*infos(32, *names)), seed=0)
    majority = np.bincount(ds.y_val).max() / len(ds.y_val)
    res = run_cli("eval", tmp_path / "run" / "model.onnx", root / "docs.csv", *text_args, "--json")
    assert res.returncode == 0, res.stderr
    sess = ort.InferenceSession(str(tmp_path / "run" / "model.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {n: ds.x_val.arrays[n] for n in names})[0].argmax(1)
    return hist, ds, majority, json.loads(res.stdout)["accuracy"], (pred == ds.y_val).mean()


def test_cli_trains_on_text_and_beats_the_majority_class(corpus, tmp_path):
    """10 epochs of AdamW on the docstrings: the loss falls and validation accuracy beats the
    majority class by 25 points (measured: 0.40 after epoch 1, 0.83 after epoch 10, majority
    0.35 of 63); eval and the exported ONNX agree with it. Before the Embedding fix of the bitmap
    scan this run crashed at its first step."""
    model = export_text_model(tmp_path / "m.onnx", corpus[2].get_vocab_size())
    hist, _, majority, evaluated, ort_acc = train_on_docstrings(corpus, model, ["input_ids"], tmp_path, 10, 0.01)
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    assert hist[-1]["val_acc"] > majority + 0.25, (hist[-1], majority)
    assert abs(evaluated - hist[-1]["val_acc"]) < 1e-9
    assert ort_acc > majority + 0.2


@pytest.mark.parametrize("case, needle", [
    ("rows", "holds token id"),
    ("column", "no column named 'body' (--text-column)"),
    ("tokenizer", "is not a readable tokenizers JSON file"),
])
def test_cli_text_errors(corpus, tmp_path, case, needle):
    root, _, tok = corpus
    model = export_text_model(tmp_path / "m.onnx", 50 if case == "rows" else tok.get_vocab_size(), seq_len=8)
    (tmp_path / "bad.json").write_text("{not json")
    res = run_cli("train", model, root / "docs.csv", "--text-column", "body" if case == "column" else "text",
                  "--label-column", "label", "--tokenizer",
                  tmp_path / "bad.json" if case == "tokenizer" else root / "tokenizer.json",
                  "--output-dir", tmp_path / "run")
    assert_user_error(res, needle)
    if case == "rows":
        assert "embedding table has 50 rows; use a tokenizer with at most 50 tokens" in res.stderr


def test_a_step_touches_exactly_the_rows_of_the_ids_at_the_ends_of_a_bitmap_word(tmp_path):
    """Ids 63 and 127 sit at bit 63 of the backward's row bitmap; the scan once shifted by 64 there
    (undefined) and wrote past its scratch: a segfault at the first step of any real vocabulary."""
    from intedge.runtime import Model, Session
    model = intedge.import_onnx(export_text_model(tmp_path / "m.onnx", 130, seq_len=4))
    s = Session(Model(model.iem), batch_size=2, lr=0.5)
    before = s.state_dict()
    s.step(np.array([[63, 127, 1, 2], [63, 64, 0, 129]]), labels=np.array([0, 1], np.int32))
    name = next(k for k, v in before.items() if v.shape == (130, 16))
    moved = np.flatnonzero(np.abs(s.state_dict()[name] - before[name]).max(1) > 0)
    assert moved.tolist() == [0, 1, 2, 63, 64, 127, 129]


def test_cli_fine_tunes_a_bert_encoder_on_text_with_its_attention_mask(corpus, tmp_path):
    """The whole user route: transformers' BertModel (masked mean pooling, a Linear head) exported
    with input_ids and attention_mask, trained from the docstring CSV through the tokenizer. The
    CLI feeds the tokenizer's mask to the model's second input; eval and the exported ONNX in
    onnxruntime (fed the same ids and mask) agree with the run."""
    import torch
    from torch_models import BertClassifier

    torch.manual_seed(0)
    names = ["input_ids", "attention_mask"]
    ids = torch.zeros(2, 32, dtype=torch.long)
    torch.onnx.export(BertClassifier(corpus[2].get_vocab_size(), 32, len(MODULES)).eval(),
                      (ids, torch.ones_like(ids)), str(tmp_path / "bert.onnx"), dynamo=False, opset_version=17,
                      input_names=names, output_names=["logits"], dynamic_axes={v: {0: "N"} for v in names + ["logits"]})
    hist, ds, majority, evaluated, ort_acc = train_on_docstrings(corpus, tmp_path / "bert.onnx", names, tmp_path, 6,
                                                                 0.003)
    assert (ds.x_val.arrays["attention_mask"] == 0).any()  # short docstrings are padded
    print("bert on docstrings:", [(round(h["train_loss"], 3), round(h["val_acc"], 3)) for h in hist], majority)
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert hist[-1]["val_acc"] > majority + 0.2, (hist[-1], majority)
    assert abs(evaluated - hist[-1]["val_acc"]) < 1e-9
    assert abs(ort_acc - hist[-1]["val_acc"]) < 0.1
