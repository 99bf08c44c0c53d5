"""Writes a trained model back as ONNX: the original graph with new float32 initializers, or
(int8=True) a QDQ graph with int8 weights and power-of-two scales, the runtime's own format."""
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .checkpoint import write_atomic
from .errors import IntedgeError


def _with_weights(imported, state_dict):
    model = onnx.ModelProto()
    model.CopyFrom(imported.onnx_model)
    replaced = set(imported.constants)  # the importer's own constants: nothing to write back
    for init in model.graph.initializer:
        if init.name in state_dict:
            arr = np.asarray(state_dict[init.name]).astype(numpy_helper.to_array(init).dtype)
            init.CopyFrom(numpy_helper.from_array(arr.reshape(tuple(init.dims)), init.name))
            replaced.add(init.name)
    for node in model.graph.node:  # weights an exporter stored as Constant nodes
        if node.op_type == "Constant" and node.output[0] in state_dict and node.attribute[0].name == "value":
            old = node.attribute[0].t
            arr = np.asarray(state_dict[node.output[0]]).astype(numpy_helper.to_array(old).dtype)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(arr.reshape(tuple(old.dims)), old.name))
            replaced.add(node.output[0])
    for node in list(model.graph.node):  # a deduplicated weight (Identity of an initializer) gets its own again
        if node.op_type == "Identity" and node.output[0] in state_dict and node.output[0] not in replaced:
            name = node.output[0]
            model.graph.node.remove(node)
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(state_dict[name], np.float32), name))
            replaced.add(name)
    missing = set(state_dict) - replaced
    if missing:
        raise IntedgeError(f"export: parameters {sorted(missing)} are not initializers of the model")
    return model


def _set_metadata(model, class_names, input_mapping, loss):
    props = {p.key: p.value for p in model.metadata_props}
    if loss:  # the task: `intedge predict` draws masks or boxes by it
        props["intedge.loss"] = loss
    if class_names:
        props["intedge.class_names"] = json.dumps(list(class_names))
    if input_mapping is not None:
        props["intedge.input_mapping"] = json.dumps(input_mapping.to_json())
    del model.metadata_props[:]
    for k, v in sorted(props.items()):
        model.metadata_props.add(key=k, value=v)


def read_metadata(props):
    """(class names or None, input mapping dict or None, training loss or None) that export stored
    in a model's metadata_props (given as a dict: ImportedModel.metadata)."""
    names = json.loads(props["intedge.class_names"]) if "intedge.class_names" in props else None
    mapping = json.loads(props["intedge.input_mapping"]) if "intedge.input_mapping" in props else None
    return names, mapping, props.get("intedge.loss")


def pow2_scale(max_abs):
    """The runtime's per-tensor scale: the max lands in [64, 127]."""
    if max_abs <= 0:
        return 1.0
    return float(2.0 ** (int(np.floor(np.log2(max_abs))) + 1 - 7))


def quantize_qdq(model, imported, calibration):
    """QDQ int8: each trained weight becomes int8 + DequantizeLinear; the graph input and each
    node output get a QuantizeLinear/DequantizeLinear pair whose power-of-two scale comes from
    the largest magnitude seen on the calibration samples. Biases stay float (ORT folds them)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise IntedgeError("--int8 export calibrates with onnxruntime: pip install onnxruntime") from None
    g = model.graph
    values = [imported.input_name] + [o for n in g.node for o in n.output]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    for v in values:
        if v not in outputs:
            probe.graph.output.append(helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed = calibration.astype(np.float32).reshape((len(calibration),) + tuple(imported.input_shape))
    maxima = dict(zip(names, (float(np.abs(a).max()) for a in sess.run(None, {imported.input_name: feed}))))

    weights = {init.name for init in g.initializer} & set(imported.param_names)
    new_inits, nodes = [], []
    for init in list(g.initializer):
        arr = numpy_helper.to_array(init)
        if init.name in weights and arr.ndim >= 2:
            scale = pow2_scale(float(np.abs(arr).max()))
            q = np.clip(np.round(arr / scale), -127, 127).astype(np.int8)
            new_inits += [numpy_helper.from_array(q, init.name + "_q"),
                          numpy_helper.from_array(np.array(scale, np.float32), init.name + "_scale"),
                          numpy_helper.from_array(np.array(0, np.int8), init.name + "_zp")]
            nodes.append(helper.make_node("DequantizeLinear", [init.name + "_q", init.name + "_scale", init.name + "_zp"],
                                          [init.name], name=init.name + "_dq"))
        else:
            new_inits.append(init)

    def qdq(value):
        s = pow2_scale(maxima.get(value, 0.0))
        base = value.replace("/", "_").replace(":", "_")
        new_inits.extend([numpy_helper.from_array(np.array(s, np.float32), base + "_act_scale"),
                          numpy_helper.from_array(np.array(0, np.int8), base + "_act_zp")])
        nodes.append(helper.make_node("QuantizeLinear", [value, base + "_act_scale", base + "_act_zp"],
                                      [base + "_q8"], name=base + "_quant"))
        nodes.append(helper.make_node("DequantizeLinear", [base + "_q8", base + "_act_scale", base + "_act_zp"],
                                      [base + "_dq8"], name=base + "_dequant"))
        return base + "_dq8"

    renamed = {imported.input_name: qdq(imported.input_name)}
    for n in g.node:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        for i, name in enumerate(n2.input):
            n2.input[i] = renamed.get(name, name)
        nodes.append(n2)
        for o in n.output:
            if o not in {x.name for x in g.output} and n.op_type not in ("Constant", "Shape"):
                renamed[o] = qdq(o)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise IntedgeError("--int8 export needs an ONNX model at opset 13 or later")
    return model


def _inference_batchnorm(model):
    """A model exported in training mode (torch's TrainingMode.PRESERVE) has BatchNormalization
    nodes with the running statistics' outputs (and at opset 14+ training_mode=1), which an ONNX
    runtime executes with the batch's statistics. The trained model is for inference: keep the
    first output (and any other that a node or the graph still reads) and drop training_mode."""
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.output) == 1:
            continue
        if any(o and o in read for o in node.output[1:]):
            continue
        del node.output[1:]
        keep = [a for a in node.attribute if a.name != "training_mode"]
        del node.attribute[:]
        node.attribute.extend(keep)
    return model


def export_onnx(imported, state_dict, path, class_names=None, input_mapping=None, int8=False, calibration=None,
                loss=None):
    """Copies the original graph, replaces each trained initializer by name, checks the result
    and writes it atomically. int8=True writes a QDQ model calibrated on `calibration` samples
    (float, already normalized)."""
    model = _inference_batchnorm(_with_weights(imported, state_dict))
    if int8:
        if calibration is None or len(calibration) == 0:
            raise IntedgeError("--int8 export needs calibration samples (the validation set)")
        model = quantize_qdq(model, imported, calibration)
    _set_metadata(model, class_names, input_mapping, loss)
    onnx.checker.check_model(model)
    return write_atomic(path, model.SerializeToString())
