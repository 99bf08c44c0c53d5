"""`intedge inspect`: what each layer is, whether it trains, and what training costs in memory."""
import fnmatch

import numpy as np
from onnx import numpy_helper

from .errors import IntedgeError
from .onnx_import import Walker, load_onnx


def trainable_flags(imported, patterns):
    """One flag per runtime parameter: True if its initializer name, or the name of the node
    reading it, matches a glob. None patterns: everything trains."""
    if not patterns:
        return None
    owners = imported.param_owners  # recorded by the import: the ONNX graph is not read again
    flags, used = [], set()
    for name in imported.param_names:
        hit = [p for p in patterns if fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(owners.get(name, ""), p)]
        used.update(hit)
        flags.append(bool(hit))
    unused = [p for p in patterns if p not in used]
    if unused:
        raise IntedgeError(f"--trainable {','.join(unused)} matches no parameter or node; parameters are: "
                           + ", ".join(imported.param_names))
    return flags


def split_patterns(text):
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def per_sample(walker, v):
    """v's shape after the batch, or its whole shape with the batch as N where an exporter moved it
    ([17, N, 96]); None if v is not an activation."""
    from .onnx_import.folding import BATCH
    from .onnx_import.views import shown
    dims = walker.onnx_dims(v) if walker.name(v) in walker.shapes or walker.name(v) in walker.views else None
    if dims is None:
        return None
    return list(dims[1:]) if dims[0] == BATCH else shown(dims)[1:-1].split(", ")


def inspect(path, batch_size=32, trainable=None):
    """Rows for each ONNX node and the planner's arena sizes."""
    from .runtime import Model

    model = load_onnx(path)
    walker = Walker(model, str(path))
    try:
        imported, refusal = walker.run(), None
    except IntedgeError as exc:  # what `train` would say; the per-node reasons are also in the rows
        imported, refusal = None, str(exc)
    inits = {t.name: t for t in model.graph.initializer}
    flags = trainable_flags(imported, trainable) if imported is not None else None
    trains = dict(zip(imported.param_names, flags)) if imported is not None and flags else {}
    rows = []
    for n in model.graph.node:
        name = n.name or n.output[0]
        params = [i for i in n.input if i in inits and np.issubdtype(numpy_helper.to_array(inits[i]).dtype, np.floating)
                  and (imported is None or i in imported.param_names)]
        count = int(sum(int(np.prod(inits[i].dims)) for i in params))
        shape = per_sample(walker, n.output[0]) if n.output else None
        trainable_state = "-" if not params else ("yes" if (not trains or any(trains.get(p) for p in params)) else "no")
        rows.append({"node": name, "op": n.op_type, "output": list(shape) if shape else None, "params": count,
                     "trainable": trainable_state, "supported": name not in walker.problem_nodes,
                     "why": walker.problem_nodes.get(name, "")})
    info = {"rows": rows, "problems": walker.problems, "refusal": refusal, "arena": None, "arena_full": None,
            "export_batch": getattr(imported, "export_batch", None)}
    if imported is not None:
        m = Model(imported.iem)
        info["arena_full"] = m.arena_size(batch_size)
        info["arena"] = m.arena_size(batch_size, trainable=flags) if flags else info["arena_full"]
        info["params"] = sum(p.numel for p in m.params)
        info["trainable_params"] = sum(p.numel for p, f in zip(m.params, flags or [True] * len(m.params)) if f)
        from .detect import describe_head

        info["output"] = list(m.output_shape)
        info["detection_head"] = describe_head(tuple(imported.input_shape or ()), m.output_shape)
    return info


def format_inspect(info, batch_size):
    rows = info["rows"]
    w = max([4] + [len(r["node"]) for r in rows])
    lines = [f"{'node':<{w}}  {'op':<18} {'output (per sample)':<20} {'params':>9}  {'trains':<6}  supported"]
    for r in rows:
        out = "x".join(str(d) for d in r["output"]) if r["output"] else "-"
        sup = "yes" if r["supported"] else f"NO: {r['why']}"
        lines.append(f"{r['node']:<{w}}  {r['op']:<18} {out:<20} {r['params']:>9}  {r['trainable']:<6}  {sup}")
    lines.append("")
    if info["arena"] is None:
        if info["problems"]:
            lines.append(f"{len(info['problems'])} node(s) cannot be trained; no memory plan.")
        else:  # a refusal of the whole graph (its inputs or outputs), as `train` gives it
            lines.append(f"cannot be trained: {info['refusal']}; no memory plan.")
        return "\n".join(lines)
    if info["export_batch"] is not None:
        lines.append(f"exported with a fixed batch of {info['export_batch']}: the importer reads the batch baked "
                     "into its Reshape targets and constant ids as any batch, so it trains at any batch size")
    lines.append(f"parameters: {info['params']:,} ({info['trainable_params']:,} trainable)")
    if info.get("detection_head"):
        out = "x".join(str(d) for d in info["output"])
        lines.append(f"output {out} reads, with detection data, {info['detection_head']}")
    kb = lambda b: f"{b / 1024:,.1f} KB"  # noqa: E731
    if info["arena"] != info["arena_full"]:
        lines.append(f"training arena at batch {batch_size}: {kb(info['arena'])} with this trainable set "
                     f"(all parameters: {kb(info['arena_full'])})")
    else:
        lines.append(f"training arena at batch {batch_size}: {kb(info['arena'])} (planned by the C runtime)")
    return "\n".join(lines)
