from __future__ import annotations

import pytest

from slmkit.errors import InvalidOptionsError
from slmkit.options import GenerationOptions, make_options
from slmkit.runtime.decoding import StopMatcher


def test_defaults_are_valid() -> None:
    o = make_options()
    assert o == GenerationOptions()
    assert o.overflow == "error"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"seed": -1}, "seed"),
        ({"stop": [""]}, "stop"),
        ({"overflow": "drop"}, "overflow"),
        ({"temprature": 0.5}, "unknown option 'temprature'"),
    ],
)
def test_invalid_options_name_the_field(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidOptionsError, match=fragment):
        make_options(**kw)


def test_stop_accepts_a_single_string() -> None:
    assert make_options(stop="\n").stop == ("\n",)


def test_overrides_keep_base_options() -> None:
    base = make_options(temperature=0, max_tokens=7)
    assert make_options(base, seed=3) == GenerationOptions(temperature=0, max_tokens=7, seed=3)


def test_stop_matcher_holds_back_possible_prefix() -> None:
    m = StopMatcher(["END"])
    out = [m.feed(x) for x in ["hello E", "N", "D tail"]]
    assert "".join(text for text, _ in out) == "hello "
    assert out[-1][1] is True


def test_stop_matcher_releases_false_alarm() -> None:
    m = StopMatcher(["END"])
    emitted = "".join(m.feed(x)[0] for x in ["EN", "X", "yz"]) + m.flush()
    assert emitted == "ENXyz"
