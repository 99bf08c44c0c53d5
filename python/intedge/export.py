"""Writes a trained model back as ONNX: the original graph with new float32 initializers."""
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import IntedgeError


def export_onnx(imported, state_dict, path):
    """Copies `imported.onnx_model`, replaces each trained initializer by name, checks the
    result and writes it atomically (temp file, fsync, rename)."""
    model = onnx.ModelProto()
    model.CopyFrom(imported.onnx_model)
    replaced = set()
    for init in model.graph.initializer:
        if init.name in state_dict:
            arr = np.asarray(state_dict[init.name]).astype(numpy_helper.to_array(init).dtype)
            init.CopyFrom(numpy_helper.from_array(arr.reshape(tuple(init.dims)), init.name))
            replaced.add(init.name)
    missing = set(state_dict) - replaced
    if missing:
        raise IntedgeError(f"export: parameters {sorted(missing)} are not initializers of the model")
    onnx.checker.check_model(model)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IntedgeError(f"cannot write {path}: {exc.strerror}; check the folder exists, is writable "
                           "and the disk has space") from None
    return path
