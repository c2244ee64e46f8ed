"""Hypothesis strategies for valid POPs and region names (what opencm itself writes)."""

from __future__ import annotations

from hypothesis import strategies as st

from opencm.phonebook.pbk import FLAG_NOT_SIGN_ON, Pop

_TEXT = st.characters(min_codepoint=32, max_codepoint=126, exclude_characters=",")
names = st.text(_TEXT, max_size=31)
digits = st.text("0123456789", max_size=11)
access = st.text("0123456789#*- ", min_size=1, max_size=41).filter(
    lambda text: any(char.isdigit() for char in text)
)
flags = st.integers(0, 255).map(lambda value: value & ~FLAG_NOT_SIGN_ON)
small = st.integers(0, 10**6)


def pops(index: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Pop]:
    return st.builds(
        Pop,
        index=index if index is not None else st.integers(1, 10**6),
        country=st.integers(1, 999),
        region=st.integers(0, 20),
        name=names,
        area=digits,
        access=access,
        min_speed=small,
        max_speed=small,
        reserved=st.integers(0, 9),
        flags=flags,
        dun=st.text(_TEXT, max_size=50),
    )


def books(max_size: int = 40) -> st.SearchStrategy[list[Pop]]:
    return st.lists(pops(), max_size=max_size, unique_by=lambda pop: pop.index)


region_names = st.lists(
    st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
        min_size=1,
        max_size=31,
    ),
    max_size=12,
)
