"""The cffi declarations are read from intedge.h; check they cover every exported function."""
import re
from pathlib import Path

from intedge import _ffi

ROOT = Path(__file__).resolve().parents[2]


def api_functions(header):
    return set(re.findall(r"IE_API\s+[\w\s\*]+?\b(ie_\w+)\s*\(", header.read_text()))


def test_every_header_function_is_bound():
    for name in ("intedge.h", "intedge_testing.h"):
        header = ROOT / "runtime" / "include" / name
        funcs = api_functions(header)
        assert len(funcs) > 10 if name == "intedge.h" else len(funcs) > 5
        cdef = _ffi.cdef_from_header(header.read_text())
        for f in funcs:
            assert re.search(rf"\b{f}\s*\(", cdef), f"{f} missing from the cdef section of {name}"
            assert callable(getattr(_ffi.lib, f)), f


def test_installed_header_matches_source():
    assert _ffi.header_path().read_text() == (ROOT / "runtime" / "include" / "intedge.h").read_text()


def test_the_writer_numbers_ops_as_the_runtime_does():
    """python/intedge/iem.py writes op codes and names that runtime/src/internal.h's enum and the
    op table (ops/registry.c) define: a drift would write models the runtime misreads."""
    from intedge import iem

    enum = {name: int(code) for name, code in
            re.findall(r"IE_OP_(\w+) = (\d+)", (ROOT / "runtime" / "src" / "internal.h").read_text())}
    registry = (ROOT / "runtime" / "src" / "ops" / "registry.c").read_text()
    registered = set(re.findall(r"^\s+\[IE_OP_(\w+)\] =", registry, re.M))
    assert {v: k for k, v in iem.OP_NAMES.items()} == enum
    assert registered == set(enum)
    for code, name in iem.OP_NAMES.items():
        assert getattr(iem, f"OP_{name}") == code
