"""The public units API that other modules use instead of units' internals."""

import pytest

from metaforge.thread import units


def test_from_base_inverts_to_base_with_an_offset():
    assert units.to_base(25, "degC") == pytest.approx(298.15)
    assert units.from_base(298.15, "degC") == pytest.approx(25)
    assert units.from_base(0.612, "mA") == pytest.approx(612)


def test_base_scale_and_offset():
    assert units.base_scale("mA") == pytest.approx((0.001, 0.0))
    factor, offset = units.base_scale("degC")
    assert (factor, offset) == pytest.approx((1.0, 273.15))
    assert units.has_offset("degC") and not units.has_offset("K") and not units.has_offset("mA")


@pytest.mark.parametrize("text,split", [("85 C", ("85", "C")), ("3", ("3", "")), ("-1.5e3mV", ("-1.5e3", "mV")),
                                        (".5 A", (".5", "A")), ("hot", None), ("", None)])
def test_split_number(text, split):
    assert units.split_number(text) == split
