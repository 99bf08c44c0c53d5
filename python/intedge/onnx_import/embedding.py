"""Gather on a weight table onto the runtime's Embedding (runtime/src/ops/embedding.c): token ids
from an integer graph input, or constant ids (position ids, token-type zeros) the exporter wrote
as a constant, or as a constant repeated over the batch (an Expand to [N, T], or the export batch
baked in: rows that are all the same)."""
import numpy as np

from .. import iem
from .nodes import attrs


def constant_ids(walker, n, v):
    """Per-sample constant ids read by node n through v, or None: a constant with a leading batch
    axis of 1, or of the export batch with every row the same (fixed-batch exports), or a constant
    Expand-ed over the batch (walker.batch_consts)."""
    v = walker.name(v)
    if v in walker.batch_consts:
        return walker.batch_consts[v]
    c = walker.const_value(v)
    if c is None:
        return None
    c = np.asarray(c)
    if c.ndim >= 2 and (c == c[:1]).all():
        return c[0]
    walker.problem(n, f"constant ids of shape {list(c.shape)} have no batch axis; Gather on a weight table reads "
                      "[batch, ...] ids")
    return False


def embedding(walker, n):
    """Gather(table [V, D], ids, axis=0): one row of the table per id."""
    table, ids = walker.name(n.input[0]), walker.name(n.input[1])
    t = walker.const_value(table)
    if attrs(n).get("axis", 0) != 0 or t is None or np.ndim(t) != 2:
        walker.problem(n, "Gather on a weight is supported on a [rows, width] table along axis 0 only")
        return
    if ids in walker.id_inputs:
        shape = walker.shapes[ids]
        index = ids
    else:
        const = constant_ids(walker, n, ids)
        if const is False:
            return
        if const is None:
            walker.problem(n, f"ids '{ids}' are neither an integer graph input nor constant; token ids must come "
                              "straight from an input of type int32 or int64")
            return
        if not np.issubdtype(const.dtype, np.integer) or const.size == 0 or const.min() < 0 or \
                const.max() >= t.shape[0]:
            walker.problem(n, f"constant ids must be integers in [0, {t.shape[0]})")
            return
        shape = const.shape
        index = walker.frozen_constant(walker.fresh(n.output[0], "ids"), const.astype(np.float32))
    w = walker.param(n, table)
    if w is not None:
        walker.emit(n, iem.OP_EMBEDDING, [w, index], (*shape, t.shape[1]))
