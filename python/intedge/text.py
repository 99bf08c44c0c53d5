"""Text data for a text model: a CSV column of text through a Hugging Face `tokenizers` JSON file,
or token-id arrays in a .npz, fed as the model's integer inputs by name: the token ids, and the
attention mask and token type ids when the model takes them. The CSV route pads or truncates to
the model's sequence length, which is the ids input's fixed length."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset, Inputs, csv_column, label_indices, read_csv, split
from .errors import IntedgeError

PIP_HINT = "pip install 'intedge[text]' (or: pip install tokenizers)"
# the ONNX ops an exporter puts between the ids input and the embedding Gather
_PASS_THROUGH = ("Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten")


def _role(name):
    n = name.lower()
    if "mask" in n:
        return "mask"
    if "type" in n or "segment" in n:
        return "types"
    return "ids"


@dataclass(frozen=True)
class TextInputs:
    """Which of the model's inputs take what: runtime InputInfos, by role."""
    ids: object
    mask: object = None
    types: object = None
    rows: int = None  # the embedding table's rows: ids must stay below

    @property
    def seq_len(self):
        return self.ids.numel


def text_inputs(infos, onnx_model):
    """The roles of a text model's inputs (by name: *mask*, *type*/*segment*, the rest ids), or an
    IntedgeError when the model cannot take text."""
    if any(not i.ids for i in infos):
        floats = ", ".join(f"'{i.name}'" for i in infos if not i.ids)
        raise IntedgeError(f"the model's input {floats} takes float data, not token ids; text needs a model whose "
                           "inputs are integer token ids (int64 input_ids feeding an embedding)")
    roles = {}
    for info in infos:
        role = _role(info.name)
        if role in roles:
            raise IntedgeError(f"the model's inputs '{roles[role].name}' and '{info.name}' both look like {role}; "
                               "name the token ids input_ids, the mask attention_mask, the types token_type_ids")
        roles[role] = info
    if "ids" not in roles:
        raise IntedgeError(f"the model's inputs ({', '.join(i.name for i in infos)}) include no token ids input")
    for role in ("mask", "types"):
        if role in roles and roles[role].numel != roles["ids"].numel:
            raise IntedgeError(f"input '{roles[role].name}' holds {roles[role].numel} values per sample but "
                               f"'{roles['ids'].name}' {roles['ids'].numel}; they must match")
    return TextInputs(roles["ids"], roles.get("mask"), roles.get("types"),
                      embedding_rows(onnx_model, roles["ids"].name))


def model_text_inputs(model):
    """text_inputs of an ImportedModel (None: text data without a model to fit it to)."""
    if model is None:
        raise IntedgeError("text data is tokenized for a model's inputs; pass the model (load_data(..., model=...))")
    from .runtime import Model

    return text_inputs(Model(model.iem).inputs, model.onnx_model)


def embedding_rows(onnx_model, name):
    """Rows of the table that Gather reads with the graph input `name` (through casts and
    reshapes), or None when no Gather on an initializer reads it."""
    g = onnx_model.graph
    tables = {t.name: t for t in g.initializer}
    values, rows = {name}, []
    for n in g.node:  # nodes are in topological order
        if n.op_type in _PASS_THROUGH and n.input and n.input[0] in values:
            values.update(n.output)
        elif n.op_type == "Gather" and len(n.input) == 2 and n.input[1] in values and n.input[0] in tables:
            rows.append(tables[n.input[0]].dims[0])
    return min(rows) if rows else None


def load_tokenizer(path):
    """A Hugging Face tokenizers JSON file (tokenizer.json)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise IntedgeError(f"--tokenizer needs the tokenizers package; install it with: {PIP_HINT}") from None
    p = Path(path)
    if not p.is_file():
        raise IntedgeError(f"--tokenizer {path}: no such file; pass a Hugging Face tokenizer.json")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as exc:  # the Rust side raises a plain Exception for any malformed file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IntedgeError(f"--tokenizer {path} is not a readable tokenizers JSON file ({reason}); save one with "
                           "Tokenizer.save or take the tokenizer.json of a Hugging Face model") from None


def _pad_token(tok):
    """(id, token) the tokenizer pads with: its own padding setting, else [PAD] or <pad>, else id 0."""
    if tok.padding:
        return tok.padding["pad_id"], tok.padding["pad_token"]
    for t in ("[PAD]", "<pad>"):
        if tok.token_to_id(t) is not None:
            return tok.token_to_id(t), t
    return 0, tok.id_to_token(0) or ""


def _copy(tok):
    """A copy to set padding and truncation on, leaving the caller's tokenizer as it was."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tok.to_str())


def encode(tok, texts, seq_len):
    """(ids, mask), each [N, seq_len] int64: the tokenizer's own encoding (special tokens included),
    truncated and padded to seq_len as the tokenizer does it."""
    tok = _copy(tok)
    pad_id, pad_token = _pad_token(tok)
    tok.enable_truncation(max_length=seq_len)
    tok.enable_padding(length=seq_len, pad_id=pad_id, pad_token=pad_token)
    enc = tok.encode_batch(list(texts))
    return (np.array([e.ids for e in enc], np.int64).reshape(len(enc), seq_len),
            np.array([e.attention_mask for e in enc], np.int64).reshape(len(enc), seq_len))


def arrays_for(inputs, ids, mask=None, types=None, what="text"):
    """The model's inputs by name from token ids [N, T] (and a mask and token types when given):
    the mask defaults to ones (no padding), token types to zeros; inputs the model lacks are
    dropped. Ids at or beyond the embedding table's rows are refused."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise IntedgeError(f"{what}: token ids must be an integer array [samples, tokens], got {ids.dtype} "
                           f"{list(ids.shape)}")
    if ids.shape[1] != inputs.seq_len:
        raise IntedgeError(f"{what}: {ids.shape[1]} token ids per sample, but the model's '{inputs.ids.name}' takes "
                           f"{inputs.seq_len}; pad or truncate them to {inputs.seq_len}")
    if ids.size and ids.min() < 0:
        raise IntedgeError(f"{what}: token id {int(ids.min())} is negative")
    if inputs.rows is not None and ids.size and ids.max() >= inputs.rows:
        bad = int(np.argwhere(ids >= inputs.rows)[0][0])
        raise IntedgeError(f"{what}: sample {bad} holds token id {int(ids[bad].max())}, but the model's embedding "
                           f"table has {inputs.rows} rows; use a tokenizer with at most {inputs.rows} tokens or a "
                           "model with a larger vocabulary")
    out = {inputs.ids.name: ids}
    for info, given, default in ((inputs.mask, mask, 1), (inputs.types, types, 0)):
        if info is None:
            continue
        a = np.full(ids.shape, default, np.int64) if given is None else np.asarray(given)
        if a.shape != ids.shape:
            raise IntedgeError(f"{what}: '{info.name}' has shape {list(a.shape)}, the token ids {list(ids.shape)}")
        out[info.name] = a
    return out


def load_text_csv(path, text_column, label_column, tokenizer, inputs, seed=0, val_fraction=0.2):
    """A CSV with a text column and a label column, tokenized for the model's inputs."""
    header, rows = read_csv(path)
    ti = csv_column(path, header, text_column, "--text-column")
    li = csv_column(path, header, label_column, "--label-column")
    if tokenizer is None:
        raise IntedgeError(f"{path}: text in column {text_column!r} needs --tokenizer tokenizer.json (a Hugging "
                           "Face tokenizers file)")
    ids, mask = encode(load_tokenizer(tokenizer), [row[ti] for _, row in rows], inputs.seq_len)
    y, names = label_indices([row[li] for _, row in rows])
    x = Inputs(arrays_for(inputs, ids, mask, what=str(path)))
    return Dataset(*split(x, y, val_fraction, seed), class_names=names, source=str(path))


NPZ_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def load_text_npz(arrays, inputs, path, seed=0, val_fraction=0.2):
    """A .npz of token ids: input_ids [N, T], labels [N], optionally attention_mask and
    token_type_ids [N, T]."""
    if "labels" not in arrays:
        raise IntedgeError(f"{path} has input_ids but no labels; a text .npz holds input_ids, labels and optionally "
                           "attention_mask, token_type_ids")
    y = np.asarray(arrays["labels"])
    x = Inputs(arrays_for(inputs, arrays["input_ids"], arrays.get("attention_mask"), arrays.get("token_type_ids"),
                          what=str(path)))
    if len(x) != len(y):
        raise IntedgeError(f"{path}: input_ids has {len(x)} samples but labels has {len(y)}")
    return Dataset(*split(x, y, val_fraction, seed), source=str(path))
