"""The committed golden digests (tests/golden/digests.json): every case, on every kernel tier this
CPU runs and with 1 and 2 threads, must give the committed loss trace, evaluation and final
training-state digest. `python tests/golden/golden.py regenerate` rewrites them (docs/testing.md)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
import golden  # noqa: E402

from intedge.runtime import kernel_tiers  # noqa: E402

COMMITTED = golden.load()


def test_every_case_is_committed():
    assert sorted(COMMITTED) == sorted(c.name for c in golden.CASES)


@pytest.mark.parametrize("case", golden.CASES, ids=lambda c: c.name)
def test_training_bytes_equal_the_committed_digests(case):
    problems = [p for k in kernel_tiers() for t in (1, 2) for p in golden.differences(case, COMMITTED[case.name], k, t)]
    assert not problems, "\n".join(problems)
