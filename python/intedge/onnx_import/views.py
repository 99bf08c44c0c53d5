"""Where the batch is: exporters move it. TorchScript and dynamo both write
torch.nn.MultiheadAttention as [T, N, E] (the batch second), reshape it to [T, N * heads, d]
(the batch merged with the heads), transpose, slice and reshape back. The runtime keeps every
activation batch first, so the importer describes an ONNX value as a *view* of a runtime tensor:
ONNX axis i merges the runtime axes groups[i], outermost first (runtime axis 0 is the batch, an
empty group is an axis of size 1). Transposes, reshapes, squeezes and unsqueezes change only the
view; an op that needs a particular layout asks the walker to lay the tensor out (core.py), which
costs one runtime Transpose at most.

Sizes that contain the batch are written as multiples of folding.BATCH, as a folded Shape reports
them, so that views and the exporters' shape arithmetic agree."""
import numpy as np

from .folding import BATCH


def identity(rank):
    """The view of a batch-first runtime tensor with `rank` per-sample axes as itself."""
    return tuple((a,) for a in range(rank + 1))


def is_identity(groups):
    return all(g == (a,) for a, g in enumerate(groups))


def full_shape(per_sample):
    """A runtime tensor's axis sizes with the batch as BATCH."""
    return [BATCH, *per_sample]


def dims(per_sample, groups):
    """The ONNX shape of a view (batch-containing sizes as multiples of BATCH)."""
    full = full_shape(per_sample)
    return [int(np.prod([full[a] for a in g], dtype=np.int64)) for g in groups]


def split_batch(d):
    """(k, b): d = k * BATCH**b."""
    return (d // BATCH, 1) if d != 0 and d % BATCH == 0 and abs(d) >= abs(BATCH) else (d, 0)


def shown(shape):
    """An ONNX shape for messages: [17, 4*N, 8]."""
    def one(d):
        k, b = split_batch(d)
        return (f"{k}*N" if k != 1 else "N") if b else str(d)
    return "[" + ", ".join(one(int(d)) for d in shape) + "]"


def resolve_target(in_dims, target):
    """ONNX Reshape's target with 0 (copy, allowzero=0) and -1 (inferred) resolved against the input's
    ONNX dims, each as (k, b). None if it does not fit."""
    parts = [split_batch(in_dims[i]) if t == 0 and i < len(in_dims) else split_batch(t) for i, t in enumerate(target)]
    total_k = int(np.prod([k for k, _ in map(split_batch, in_dims)], dtype=np.int64))
    total_b = sum(b for _, b in map(split_batch, in_dims))
    known = [(k, b) for (k, b), t in zip(parts, target) if t != -1]
    known_k = int(np.prod([k for k, _ in known], dtype=np.int64))
    known_b = sum(b for _, b in known)
    if target.count(-1) > 1 or any(k <= 0 for k, _ in known):
        return None
    if -1 in target:
        if total_k % known_k or total_b < known_b:
            return None
        parts[target.index(-1)] = (total_k // known_k, total_b - known_b)
    if int(np.prod([k for k, _ in parts], dtype=np.int64)) != total_k or sum(b for _, b in parts) != total_b:
        return None
    return parts


def match_reshape(per_sample, groups, parts):
    """Reads the target parts (k, b) off the view's runtime axes, in the view's order.
    Returns ("groups", new groups) when the runtime tensor can stay as it is, ("split", axis, outer)
    when runtime axis `axis` must first be split into (outer, size / outer), or ("no", reason)."""
    full = full_shape(per_sample)
    atoms = [a for g in groups for a in g]
    out, i = [], 0
    for j, (k, b) in enumerate(parts):
        group, acc_k, acc_b = [], 1, 0
        while i < len(atoms) and (acc_k, acc_b) != (k, b):
            a = atoms[i]
            if a == 0:
                if b == 0 or acc_b:
                    return "no", "it would split the batch from the axis it is merged with"
                acc_b = 1
            else:
                s = full[a]
                if k % (acc_k * s) == 0:
                    acc_k *= s
                else:
                    need = k // acc_k if k % acc_k == 0 else 0
                    if need > 1 and s % need == 0:
                        return "split", a, need
                    return "no", f"its size {k} cuts an axis of {s} in a way no view can"
            group.append(a)
            i += 1
        if (acc_k, acc_b) != (k, b):
            return "no", "the sizes do not add up"
        while j == len(parts) - 1 and i < len(atoms) and full[atoms[i]] == 1:  # trailing unit axes
            group.append(atoms[i])
            i += 1
        out.append(tuple(group))
    if i != len(atoms):
        return "no", "the sizes do not add up"
    return "groups", tuple(out)


def renumber_after_split(groups, axis):
    """The view after runtime axis `axis` became two axes (axis, axis + 1)."""
    return tuple(tuple(x for a in g for x in ((a, a + 1) if a == axis else (a + (a > axis),))) for g in groups)


def renumber_after_drop(groups, axis):
    """The view after runtime axis `axis` (of size 1, in no group) was removed."""
    return tuple(tuple(a - (a > axis) for a in g) for g in groups)


def laid_out(groups, order):
    """The view once the runtime axes are permuted to `order` (order[i]: the old axis now at i)."""
    pos = {a: i for i, a in enumerate(order)}
    return tuple(tuple(pos[a] for a in g) for g in groups)
