"""Agent-made ids and SHA-256 digests are checked against the whole string: Python's ``$`` matches before a
final newline, so an id checked with it would let ``"cap-00000001\\n"`` through."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invigil import payloads
from invigil import protocol as p

GOOD_ID = "cap-00000001"
GOOD_SHA = "0" * 64


@pytest.mark.parametrize("tail", ["\n", "\r\n", "\r", " ", "\x00"])
@pytest.mark.parametrize("use", ["match", "fullmatch", "search"])
def test_an_id_or_digest_with_anything_after_it_never_matches(tail: str, use: str) -> None:
    assert getattr(p.ID_RE, use)(GOOD_ID) and getattr(p.SHA256_RE, use)(GOOD_SHA)
    assert not getattr(p.ID_RE, use)(GOOD_ID + tail)
    assert not getattr(p.SHA256_RE, use)(GOOD_SHA + tail)


@pytest.mark.parametrize("value", [GOOD_ID + "\n", "\n" + GOOD_ID, GOOD_ID[:7], "x" * 65, "cap/../0001"])
def test_check_id_refuses_by_name(value: str) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        payloads.check_id(value, "capture id")
    assert refused.value.code == "bad_id" and "capture id" in refused.value.message


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=70))
def test_the_openapi_pattern_and_the_python_check_agree(text: str) -> None:
    """What the API document promises (ECMA-262: ``$`` is the end) is what the server accepts."""
    ecma_end = re.fullmatch(p.ID_PATTERN.removeprefix("^").removesuffix("$"), text) is not None
    assert (p.ID_RE.fullmatch(text) is not None) == ecma_end
