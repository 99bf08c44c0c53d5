"""cffi (ABI mode) binding of libintedge. The declarations come from intedge.h itself, between
the IE_CDEF_BEGIN and IE_CDEF_END markers, so the binding cannot drift from the header."""
import os
import re
import sys
from pathlib import Path

import cffi

_HERE = Path(__file__).resolve().parent


def _library_name():
    if sys.platform == "darwin":
        return "libintedge.dylib"
    if sys.platform == "win32":
        return "intedge.dll"
    return "libintedge.so"


def header_path():
    return Path(os.environ.get("INTEDGE_HEADER", _HERE / "intedge.h"))


def library_path():
    return Path(os.environ.get("INTEDGE_LIBRARY", _HERE / _library_name()))


def cdef_from_header(text):
    """The declarations between the markers, without the export macro."""
    m = re.search(r"IE_CDEF_BEGIN[^\n]*\n(.*?)/\*\s*IE_CDEF_END", text, re.S)
    if not m:
        raise RuntimeError("intedge.h has no IE_CDEF_BEGIN/IE_CDEF_END section")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return body.replace("IE_API ", "")


ffi = cffi.FFI()
ffi.cdef(cdef_from_header(header_path().read_text()))
# the testing surface (intedge_testing.h) is unstable API, bound for the test suite
ffi.cdef(cdef_from_header(header_path().with_name("intedge_testing.h").read_text()))
lib = ffi.dlopen(str(library_path()))
