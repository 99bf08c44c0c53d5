"""Requantization properties (hypothesis): range, -128 never appears, exact exponent
bookkeeping, exactness when no bits are dropped, and one-ulp accuracy otherwise."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from intedge._ffi import ffi, lib

LIMIT = (1 << 62) - 1


def requant(x, seed=0, nearest=0):
    x = np.ascontiguousarray(x, np.int64)
    y = np.empty(len(x), np.int8)
    s = lib.ie_test_requant_s64(ffi.from_buffer("int64_t[]", x), len(x), seed, nearest, ffi.from_buffer("int8_t[]", y))
    return y, s


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=1, max_size=64), st.integers(0, 2**64 - 1), st.booleans())
def test_requant_properties(values, seed, nearest):
    x = np.array(values, np.int64)
    y, s = requant(x, seed, int(nearest))
    m = max(abs(int(v)) for v in values)
    assert s == m.bit_length() - 7
    assert y.min() >= -127 and y.max() <= 127
    for xi, yi in zip(values, y.tolist()):
        if s <= 0:
            assert yi == xi * 2 ** (-s)  # left shifts are exact
        else:
            assert abs(yi * 2**s - xi) < 2**s  # within one output ulp (exact integers here)


def test_requant_zero_tensor():
    y, s = requant(np.zeros(10, np.int64))
    assert s == -7 and not y.any()


def test_requant_each_power_of_two():
    for p_ in range(63):
        x = np.array([1 << p_, -(1 << p_)], np.int64) if p_ < 62 else np.array([LIMIT], np.int64)
        y, s = requant(x)
        assert s == x.max().item().bit_length() - 7
        if p_ < 62:
            assert y.tolist() == [64, -64]


def test_requant_never_minus_128():
    for s in range(1, 40):
        x = np.array([-(128 << s) + 1, 1], np.int64)
        for seed in range(20):
            y, _ = requant(x, seed)
            assert y[0] == -127 or y[0] == -128 + 1
