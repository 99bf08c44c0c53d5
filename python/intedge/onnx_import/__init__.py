"""ONNX -> .iem: maps an ONNX graph onto the runtime's ops, with errors that name every node the
runtime cannot train.

The package mirrors runtime/src/ops/: one module per op family under the runtime file's name
(activation, batchnorm, binary, conv, elementwise, embedding, gemm, layernorm, layout, pool,
softmax), each tagging the handlers of the ONNX ops it maps; registry.py collects the tags; core.py
walks the graph and gives the handlers a Walker to call; views.py follows the batch where exporters
move it; fusions.py turns node patterns into one runtime op; folding.py evaluates the exporters'
constant shape arithmetic, and masks.py what they compute from integer inputs (attention masks) on
probe masks, for the fusions that read them."""
from .core import ImportedModel, Walker, import_onnx, load_onnx

__all__ = ["ImportedModel", "Walker", "import_onnx", "load_onnx"]
