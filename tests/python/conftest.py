import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def digits():
    import intedge
    return intedge.load_data("builtin:digits", seed=0)


@pytest.fixture(scope="session")
def mlp_digits():
    """The bundled 64-128-10 MLP (Flatten from [N,1,8,8]), rebuilt by its script."""
    from build_mlp import build_mlp
    return build_mlp([64, 128, 10], input_shape=(1, 8, 8), seed=0)


def run_cli(*args, cwd=None):
    """Runs the installed `intedge` console script."""
    return subprocess.run([str(Path(sys.executable).with_name("intedge")), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def assert_user_error(res, *needles, lines=1):
    """A user error as the CLI must give it: exit code 2, "intedge: error: ..." on one line (or
    `lines`: a refusal has a line per node), no traceback, naming each of needles."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == lines, res.stderr
    assert res.stderr.startswith("intedge: error:"), res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr


@pytest.fixture(scope="session", autouse=True)
def worst_op_errors():
    """Prints (pytest -s) the worst error of each op check that recorded one (transformer_graphs)."""
    yield
    graphs = sys.modules.get("transformer_graphs")
    if graphs and graphs.ERRORS:
        print("\nworst error in output ulps:", {k: round(v, 4) for k, v in sorted(graphs.ERRORS.items())})


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
