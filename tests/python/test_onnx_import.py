"""The importer's registry: every ONNX op it handles is claimed by one family module, listed in
the refusal message and documented in docs/operators.md."""
import re
import types
from pathlib import Path

import pytest
from onnx import TensorProto, helper

import intedge
from intedge.onnx_import import registry
from intedge.onnx_import.nodes import handles

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


def test_every_handled_op_has_a_row_in_docs_operators():
    rows = [line.split("|")[1] for line in DOCS.read_text().splitlines() if line.startswith("| ")]
    documented = set(re.findall(r"[A-Z][A-Za-z0-9]+", " ".join(rows)))
    assert set(registry.HANDLERS) - documented == set()


def test_refusal_lists_what_the_registry_holds():
    g = helper.make_graph([helper.make_node("Softplus", ["x"], ["y"], name="t")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    with pytest.raises(intedge.IntedgeError) as err:
        intedge.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    listed = str(err.value).split("Supported operators: ")[1]
    assert listed.startswith(", ".join(registry.SUPPORTED) + ", and constant shape arithmetic")
    assert {shown.split(" (")[0] for shown in registry.SUPPORTED} == set(registry.HANDLERS)
    assert "Pad (zeros)" in registry.SUPPORTED and "Clip (ReLU6)" in registry.SUPPORTED


def test_an_op_claimed_twice_is_refused_at_build():
    def family(name):
        module = types.ModuleType(name)

        @handles("Relu")
        def handler(walker, n):
            pass
        handler.__module__ = name
        module.handler = handler
        return module

    with pytest.raises(ValueError, match="Relu is handled by both a.handler and b.handler"):
        registry.build([family("a"), family("b")])
    handlers, supported, _, _ = registry.build([family("a")])
    assert list(handlers) == ["Relu"] and supported == ["Relu"]
