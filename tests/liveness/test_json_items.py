"""podman's container list decoded one entry at a time: the same items as json.loads,
and a list that does not end well is refused, never taken in part."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamguard.liveness.podman_entries import json_array_items

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


def same_as_json(text: str) -> tuple[str, Any]:
    """("items", the list) or ("refused", None): json_array_items against json.loads."""
    try:
        return "items", list(json_array_items(text))
    except ValueError:
        return "refused", None


def json_loads(text: str) -> tuple[str, Any]:
    try:
        whole = json.loads(text)
    except ValueError:
        return "refused", None
    return ("items", whole) if isinstance(whole, list) else ("refused", None)


@given(st.lists(values, max_size=6), st.sampled_from([None, 0, 2]))
def test_a_list_gives_its_items(items: list[Any], indent: int | None) -> None:
    text = json.dumps(items, indent=indent)
    assert list(json_array_items(text)) == items
    assert list(json_array_items(f" \n{text}\t\r\n")) == items


@given(st.lists(values, min_size=1, max_size=6), st.data())
def test_cut_or_changed_text_is_judged_as_json_loads_judges_it(
    items: list[Any], data: st.DataObject
) -> None:
    text = json.dumps(items, indent=data.draw(st.sampled_from([None, 1])))
    cut = data.draw(st.integers(0, len(text)))
    assert same_as_json(text[:cut]) == json_loads(text[:cut])
    at = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from([",", "]", "[", "}", "{", '"', " ", "x", "1"]))
    changed = text[:at] + char + text[at + 1 :]
    assert same_as_json(changed) == json_loads(changed)


@pytest.mark.parametrize(
    "text",
    ["", "{}", '{"a": []}', "[1,]", "[,1]", "[1 2]", "[1]]", "[1] x", "[", "[1", "nul", "[]x"],
)
def test_not_a_list(text: str) -> None:
    assert same_as_json(text) == ("refused", None)


def test_items_before_a_fault_come_out_first() -> None:
    """The caller sees the good items before the error: it must (and the API source
    does) keep nothing of such a list."""
    seen = []
    with pytest.raises(ValueError):
        for item in json_array_items('[{"Id": "a"}, {"Id": "b"} {"Id": "c"}]'):
            seen.append(item)
    assert seen == [{"Id": "a"}, {"Id": "b"}]
