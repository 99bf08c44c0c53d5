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
