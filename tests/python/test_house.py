"""House rules that a reader notices: no source line longer than LIMIT characters (the tree's C is
written to 120 columns, see .clang-format; a line of 1,000 characters once hid a whole macro)."""
from conftest import ROOT

LIMIT = 140
FOLDERS = ("runtime", "python", "tools", "tests")
TEXT_SUFFIXES = {".c", ".h", ".py", ".cmake", ".ld", ".sh", ".txt", ".md", ".toml", ".cfg", ".in", ""}


def source_files():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                yield path


def long_lines(path):
    text = path.read_bytes()
    if b"\0" in text:  # a binary without a suffix
        return []
    return [(n, len(line)) for n, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1) if len(line) > LIMIT]


def test_no_source_line_is_longer_than_the_limit():
    files = list(source_files())
    assert len(files) > 100  # the walk found the tree
    offenders = [f"{p.relative_to(ROOT)}:{n}: {length} characters" for p in files for n, length in long_lines(p)]
    assert not offenders, f"lines over {LIMIT} characters (wrap them; .clang-format does it for C):\n" + "\n".join(offenders)
