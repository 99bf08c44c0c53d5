"""intedge: train neural networks on the device in integer arithmetic only.

The C runtime (libintedge) owns the math; this package imports ONNX, feeds data, runs the
training loop and writes the trained model back as ONNX."""
from .checkpoint import Checkpoint, CheckpointError
from .data import Dataset, InputMapping, load_data
from .errors import IntedgeError
from .export import export_onnx
from .onnx_import import ImportedModel, import_onnx
from .runtime import Model, NumberFormat, Session
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Checkpoint", "CheckpointError", "Dataset", "InputMapping", "ImportedModel", "IntedgeError", "Model",
           "NumberFormat", "Session", "Trainer", "export_onnx", "import_onnx", "load_data", "__version__"]
