"""Tests for layerspec.yamlload: positions, plain-data results, and every refusal."""

from __future__ import annotations

import copy
import math
import pickle
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerspec.errors import SpecError
from layerspec.yamlload import Mark, YMap, YSeq, key_mark_of, load_yaml, mark_of, text_of

FILE = "net.yaml"


def load(data: str | bytes, **kwargs: int) -> object:
    return load_yaml(data, FILE, **kwargs)


def fails(data: str | bytes, line: int, column: int, *fragments: str, **kwargs: int) -> str:
    """Assert that loading ``data`` raises SpecError at ``line:column`` whose message holds
    every fragment; returns the message."""
    with pytest.raises(SpecError) as info:
        load(data, **kwargs)
    err = info.value
    assert (err.file, err.line, err.column) == (FILE, line, column), str(err)
    for fragment in fragments:
        assert fragment in err.message, str(err)
    text = str(err)
    assert text.startswith(f"{FILE}:{line}:{column}: error: ")
    assert "\n" not in text and "<unicode string>" not in text and "Traceback" not in text
    return err.message


# --------------------------------------------------------------------------------------------
# Plain data and positions


BLOCK = """\
name: lenet
layers:
  - type: conv
    size: [5, 5, 1, 20]
    pad: 0
  - type: pool
    method: max
    stride: 2
train:
  learningRate: 0.001
  nesterovUpdate: no
"""


def test_block_style_values_and_types() -> None:
    spec = load(BLOCK)
    assert spec == {
        "name": "lenet",
        "layers": [
            {"type": "conv", "size": [5, 5, 1, 20], "pad": 0},
            {"type": "pool", "method": "max", "stride": 2},
        ],
        "train": {"learningRate": 0.001, "nesterovUpdate": False},
    }
    assert isinstance(spec, YMap)
    assert isinstance(spec["layers"], YSeq)
    assert isinstance(spec["layers"][0], YMap)
    assert isinstance(spec["layers"][0]["size"], YSeq)
    assert type(spec["train"]["nesterovUpdate"]) is bool


def test_block_style_positions() -> None:
    spec = load(BLOCK)
    assert spec.mark == Mark(1, 1)
    assert key_mark_of(spec, "layers") == Mark(2, 1)
    assert mark_of(spec, "name") == Mark(1, 7)
    layers = spec["layers"]
    assert mark_of(spec, "layers") == Mark(3, 3) == layers.mark  # the first '-'
    assert mark_of(layers, 0) == Mark(3, 5) == layers[0].mark  # the first key after '- '
    assert mark_of(layers, 1) == Mark(6, 5)
    assert mark_of(layers, -1) == Mark(6, 5)
    pool = layers[1]
    assert key_mark_of(pool, "stride") == Mark(8, 5)
    assert mark_of(pool, "stride") == Mark(8, 13)
    size = layers[0]["size"]
    assert mark_of(layers[0], "size") == Mark(4, 11) == size.mark  # the '['
    assert size.item_marks == [Mark(4, 12), Mark(4, 15), Mark(4, 18), Mark(4, 21)]
    assert mark_of(size, 3) == Mark(4, 21)
    assert key_mark_of(spec["train"], "nesterovUpdate") == Mark(11, 3)
    assert mark_of(spec["train"], "nesterovUpdate") == Mark(11, 19)


def test_indentless_sequence_and_nested_mapping_positions() -> None:
    data = load("layers:\n- type: relu\n-   type: softmax\n    name: prob\n")
    layers = data["layers"]
    assert layers.mark == Mark(2, 1)
    assert layers.item_marks == [Mark(2, 3), Mark(3, 5)]
    assert key_mark_of(layers[1], "name") == Mark(4, 5)
    assert mark_of(layers[1], "name") == Mark(4, 11)


def test_flow_style_positions() -> None:
    data = load("a: {x: 1, yy: [7, {z: q}]}\nb: [ 'q', \"r\" ]\n")
    a = data["a"]
    assert a.mark == Mark(1, 4)
    assert key_mark_of(a, "x") == Mark(1, 5)
    assert mark_of(a, "x") == Mark(1, 8)
    assert key_mark_of(a, "yy") == Mark(1, 11)
    assert mark_of(a, "yy") == Mark(1, 15)
    assert a["yy"].item_marks == [Mark(1, 16), Mark(1, 19)]
    assert key_mark_of(a["yy"][1], "z") == Mark(1, 20)
    assert mark_of(a["yy"][1], "z") == Mark(1, 23)
    assert data["b"] == ["q", "r"]
    assert data["b"].item_marks == [Mark(2, 6), Mark(2, 11)]


def test_crlf_and_bom_do_not_shift_positions() -> None:
    text = "a: 1\r\nb:\r\n  c: 2\r\n"
    for data in (text, text.encode(), b"\xef\xbb\xbf" + text.encode(), "\ufeff" + text):
        result = load(data)
        assert result == {"a": 1, "b": {"c": 2}}
        assert key_mark_of(result["b"], "c") == Mark(3, 3)
        assert mark_of(result["b"], "c") == Mark(3, 6)


def test_columns_count_characters_not_bytes() -> None:
    data = load("é: [ü, x]\n".encode())
    assert data["é"].item_marks == [Mark(1, 5), Mark(1, 8)]


def test_scalar_resolution_follows_yaml_1_1() -> None:
    data = load(
        "i: 12\nneg: -3\noct: 010\nhex: 0x1f\nunder: 1_000\nsexa: 1:30\n"
        "f: 0.5\nf2: -1.5e+3\nsci_without_dot: 1e-3\n"
        "t: true\ny: yes\noff_: off\nn: ~\nn2: null\nempty:\n"
        "s: hello world\nq: '12'\ndate: 2024-01-31\neq: =\n"
    )
    assert data == {
        "i": 12, "neg": -3, "oct": 8, "hex": 31, "under": 1000, "sexa": 90,
        "f": 0.5, "f2": -1500.0, "sci_without_dot": "1e-3",
        "t": True, "y": True, "off_": False, "n": None, "n2": None, "empty": None,
        "s": "hello world", "q": "12", "date": "2024-01-31", "eq": "=",
    }
    assert type(data["i"]) is int and type(data["f"]) is float


def test_explicit_standard_tags() -> None:
    data = load("a: !!str 5\nb: !!float 1\nc: !!int '12'\nd: !!bool 'yes'\ne: !!null ''\n"
                "f: !!seq [1]\ng: !!map {k: v}\nh: ! 7\n")
    assert data == {"a": "5", "b": 1.0, "c": 12, "d": True, "e": None,
                    "f": [1], "g": {"k": "v"}, "h": 7}
    assert type(data["b"]) is float


def test_value_and_item_texts_keep_the_source_text() -> None:
    data = load("pad: yes\nq: \"on\"\nlist: [Off, &a 3, !!str 4, *a, [x]]\nsub: {k: v}\n"
                "block: |\n  two\n  lines\n")
    assert data["pad"] is True
    assert data.value_texts["pad"] == "yes"
    assert text_of(data, "q") == '"on"'
    assert "sub" not in data.value_texts
    assert text_of(data, "sub") is None
    assert data["list"].item_texts == ["Off", "3", "4", "3", None]
    assert text_of(data["list"], 0) == "Off"
    assert text_of(data, "block") == "|\n  two\n  lines"
    assert data["block"] == "two\nlines\n"


def test_helpers_on_plain_containers_and_missing_keys() -> None:
    assert mark_of({"a": 1}, "a") is None
    assert mark_of([1], 0) is None
    assert key_mark_of({"a": 1}, "a") is None
    assert text_of({"a": 1}, "a") is None
    data = load("a: [1]\n")
    assert mark_of(data, "zzz") is None
    assert key_mark_of(data, "zzz") is None
    assert mark_of(data["a"], 5) is None
    assert mark_of(data["a"], "0") is None
    assert mark_of(data["a"], True) is None


def test_containers_copy_and_pickle_with_marks() -> None:
    data = load("a: [1, 2]\n")
    for clone in (copy.deepcopy(data), pickle.loads(pickle.dumps(data))):
        assert clone == data
        assert clone.key_marks == data.key_marks
        assert clone["a"].item_marks == data["a"].item_marks
    assert YMap({"k": 1}, mark=Mark(2, 3)).mark == Mark(2, 3)
    assert YSeq([1]).item_marks == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("[1, 2]\n", [1, 2]), ("just text\n", "just text"), ("~\n", None), ("--- 5\n", 5)],
)
def test_top_level_value_of_any_kind_is_returned(text: str, expected: object) -> None:
    assert load(text) == expected


# --------------------------------------------------------------------------------------------
# Aliases and merge keys


def test_aliases_expand_into_independent_copies() -> None:
    data = load("base: &b {k: [1, 2]}\nuse: *b\nlist:\n  - *b\n")
    assert data["use"] == {"k": [1, 2]}
    assert data["use"] is not data["base"]
    data["use"]["k"].append(3)
    assert data["base"]["k"] == [1, 2]
    assert mark_of(data, "use") == Mark(2, 6)  # the alias
    assert data["use"].mark == Mark(1, 7)  # the definition (a node starts at its anchor)
    assert key_mark_of(data["use"], "k") == Mark(1, 11)
    assert mark_of(data["list"], 0) == Mark(4, 5)


def test_merge_keys() -> None:
    text = """\
conv: &conv {type: conv, pad: 1, stride: 1}
relu: &relu {type: relu, leak: 0}
layers:
  - <<: *conv
    stride: 2
  - name: r1
    <<: [*relu, *conv]
  - "<<": not a merge
"""
    data = load(text)
    first, second, third = data["layers"]
    assert first == {"type": "conv", "pad": 1, "stride": 2}
    assert list(first) == ["type", "pad", "stride"]
    assert mark_of(first, "stride") == Mark(5, 13)  # the explicit value wins
    assert key_mark_of(first, "pad") == Mark(1, 26)  # merged keys keep their definition's mark
    assert mark_of(first, "pad") == Mark(1, 31)
    assert second == {"name": "r1", "type": "relu", "leak": 0, "pad": 1, "stride": 1}
    assert mark_of(second, "type") == Mark(2, 20)  # the earlier merged mapping wins
    assert third == {"<<": "not a merge"}


def test_merge_key_errors() -> None:
    fails("a: {<<: {x: 1}, <<: {y: 2}}\n", 1, 17, "duplicate key '<<'")
    fails("a:\n  <<: 5\n", 2, 7, "merge key '<<' must be a mapping or a list of mappings")
    fails("a:\n  <<: [{x: 1}, 5]\n", 2, 16, "merge key '<<' must be a mapping")
    fails("a: &a\n  <<: *a\n", 2, 7, "recursive alias")
    fails("a: &a [{<<: *a}]\n", 1, 13, "recursive alias")


def test_undefined_and_duplicate_anchors() -> None:
    fails("a: 1\nb: *nowhere\n", 2, 4, "alias '*nowhere'", "no anchor")
    fails("a: &x 1\nb: &x 2\n", 2, 4, "anchor '&x' is defined twice (first at line 1)")


def test_recursive_aliases() -> None:
    fails("a: &a [1, *a]\n", 1, 11, "alias '*a'", "recursive")
    fails("a: &a\n  b:\n    c: *a\n", 3, 8, "recursive")


def test_billion_laughs_is_refused_fast() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghij":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    start = time.perf_counter()
    # 'f' is the first entry expanding to more than 100,000 nodes (9**6): at its first alias.
    fails("\n".join(lines) + "\n", 6, 8, "too many nodes after expanding aliases",
          "billion laughs")
    assert time.perf_counter() - start < 1.0


def test_billion_laughs_with_mappings() -> None:
    lines = ["a: &a {x: 1, y: 2, z: 3, w: 4}"]
    previous = "a"
    for name in "bcdefghijklmnopqrstu":
        lines.append(f"{name}: &{name} {{p: *{previous}, q: *{previous}}}")
        previous = name
    start = time.perf_counter()
    # 'n' (line 14) is the first entry of more than 100,000 nodes: at its first alias.
    message = fails("\n".join(lines) + "\n", 14, 11, "too many nodes after expanding aliases")
    assert "100000" in message
    assert time.perf_counter() - start < 1.0


def test_node_limit_without_aliases() -> None:
    fails("[" + ", ".join(["1"] * 20) + "]\n", 1, 29, "too many nodes (more than 10)",
          max_nodes=10)


def test_depth_limit_after_expanding_aliases() -> None:
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n"
    fails(text, 2, 44, "nesting is deeper than 64 levels after expanding aliases")


# --------------------------------------------------------------------------------------------
# Nesting and size limits


def test_depth_limit_boundary() -> None:
    assert load("[" * 64 + "]" * 64)
    fails("[" * 65 + "]" * 65, 1, 65, "nesting is deeper than 64 levels")
    fails("a:\n b:\n  c:\n   d: 1\n", 3, 3, "nesting is deeper than 2 levels", max_depth=2)


@pytest.mark.parametrize(
    ("text", "column"),
    [("[" * 100_000, 65), ("{a: " * 100_000, 4 * 64 + 1), ("- " * 100_000, 2 * 64 + 1)],
    ids=["flow-sequences", "flow-mappings", "block-sequences"],
)
def test_100k_nested_brackets_are_refused_cleanly(text: str, column: int) -> None:
    start = time.perf_counter()
    fails(text, 1, column, "nesting is deeper than 64 levels")
    assert time.perf_counter() - start < 2.0


def test_huge_depth_limit_still_gives_a_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        load("[" * 100_000, max_depth=10**9)
    assert "nesting is too deep" in info.value.message
    assert info.value.line == 1


def test_max_bytes() -> None:
    fails(b"a: 1\n" * 10, 1, 1, "file is too large: 50 bytes (the limit is 20 bytes)",
          max_bytes=20)
    fails("a: 1\n" * 10, 1, 1, "file is too large", max_bytes=20)
    fails("é" * 15, 1, 1, "file is too large: 30 bytes", max_bytes=20)
    assert load(b"- 1\n" * 5, max_bytes=20) == [1] * 5


# --------------------------------------------------------------------------------------------
# Encoding and characters


def test_non_utf8_byte_reported_at_its_line_and_column() -> None:
    data = b"name: lenet\nlayers:\n  - type: p\xf6ol\n"
    message = fails(data, 3, 12, "not UTF-8", "0xf6", "offset 31")
    assert "UTF-16" not in message


def test_utf16_gets_a_hint() -> None:
    fails("a: 1\n".encode("utf-16"), 1, 1, "not UTF-8", "UTF-16")


def test_nul_and_control_characters() -> None:
    fails(b"a: 1\nb: x\x00y\n", 2, 5, "NUL byte")
    fails("a: 1\nb: \x1b[31m\n", 2, 4, "control character U+001B")
    fails("a: \ud800\n", 1, 4, "surrogate")


# --------------------------------------------------------------------------------------------
# Documents and syntax errors


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n", "---\n",
                                  "--- # nothing\n...\n", "\ufeff"])
def test_empty_files(text: str) -> None:
    fails(text, 1, 1, "file is empty")
    fails(text.encode(), 1, 1, "file is empty")


def test_second_document_is_refused_at_its_start() -> None:
    fails("a: 1\n---\nb: 2\n", 2, 1, "second YAML document", "exactly one document")
    fails("--- \na: 1\n\n---\n", 4, 1, "second YAML document")


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: b: c\n", 1, 5, "mapping values are not allowed here"),
        ("a:\n  b: 1\n   c: 2\n", 3, 5, "mapping values are not allowed here"),
        ("a: [1, 2\nb: 3\n", 2, 2, "expected ',' or ']'"),
        ("a: 'never closed\n", 2, 1, "found unexpected end of stream"),
        ("a:\tb\n", 1, 3, "found character '\\t' that cannot start any token"),
        ("key: value\n- item\n", 2, 1, "expected <block end>, but found '-'"),
        ("a: @x\n", 1, 4, "found character '@' that cannot start any token"),
    ],
)
def test_syntax_errors_are_one_line_with_pyyaml_positions(
    text: str, line: int, column: int, fragment: str
) -> None:
    fails(text, line, column, fragment)


# --------------------------------------------------------------------------------------------
# Keys


def test_duplicate_keys() -> None:
    fails("pool:\n  stride: 2\n  pad: 0\n  stride: 3\n", 4, 3,
          "duplicate key 'stride' (first given at line 2)")
    fails("{a: 1, a: 2}\n", 1, 8, "duplicate key 'a' (first given at line 1, column 2)")
    fails("a: 1\n'a': 2\n", 2, 1, "duplicate key 'a'")


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("? [a]\n: x\n", 1, 3, "keys must be strings, not a sequence"),
        ("{? {a: 1}: x}\n", 1, 4, "keys must be strings, not a mapping"),
        ("[a, b]: x\n", 1, 1, "keys must be strings, not a sequence"),
        ("a: 1\n1: x\n", 2, 1, "keys must be strings, but '1' is read as an integer"),
        ("null: x\n", 1, 1, "keys must be strings, but 'null' is read as null"),
        ("on: x\n", 1, 1, "'on' is read as a boolean"),
        ("1.5: x\n", 1, 1, "'1.5' is read as a number"),
        ("{: x}\n", 1, 2, "expected the node content"),
        ("? \n: x\n", 1, 2, "keys must be strings, but this key is empty"),
    ],
)
def test_keys_must_be_strings(text: str, line: int, column: int, fragment: str) -> None:
    fails(text, line, column, fragment)


def test_quoted_and_tagged_keys_are_strings() -> None:
    assert load("'1': a\n\"on\": b\n!!str 2: c\n") == {"1": "a", "on": "b", "2": "c"}


# --------------------------------------------------------------------------------------------
# Tags and numbers


@pytest.mark.parametrize(
    ("text", "line", "column", "tag"),
    [
        ("a: 1\nb: !!python/object/apply:os.system ['ls']\n", 2, 4,
         "!!python/object/apply:os.system"),
        ("!!python/object:__main__.X {a: 1}\n", 1, 1, "!!python/object:__main__.X"),
        ("- !!python/name:os.system\n", 1, 3, "!!python/name:os.system"),
        ("a: !foo bar\n", 1, 4, "!foo"),
        ("a: !!binary aGVsbG8=\n", 1, 4, "!!binary"),
        ("a: !!set {x}\n", 1, 4, "!!set"),
    ],
)
def test_tags_other_than_the_standard_ones_are_refused(
    text: str, line: int, column: int, tag: str
) -> None:
    fails(text, line, column, f"tag '{tag}' is not allowed: spec files hold plain data, never code")


def test_python_tag_is_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args) or 0)
    fails("!!python/object/apply:os.system ['echo hacked']\n", 1, 1, "is not allowed")
    assert calls == []


def test_standard_tags_on_the_wrong_kind_of_node() -> None:
    fails("a: !!str [1]\n", 1, 4, "tag '!!str' cannot be used on a sequence")
    fails("a: !!seq x\n", 1, 4, "tag '!!seq' cannot be used on a scalar")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("a: !!int abc\n", "cannot read 'abc' as an integer"),
     ("a: !!int 1.5\n", "cannot read '1.5' as an integer"),
     ("a: !!bool maybe\n", "cannot read 'maybe' as a boolean"),
     ("a: !!null nothing\n", "cannot read 'nothing' as null"),
     ("a: !!float x1\n", "cannot read 'x1' as a number")],
)
def test_explicit_tags_with_values_that_do_not_fit(text: str, fragment: str) -> None:
    fails(text, 1, 4, fragment)


@pytest.mark.parametrize(
    ("text", "line", "column", "shown"),
    [
        ("lr: .nan\n", 1, 5, ".nan"),
        ("x:\n  y: [1, .NaN]\n", 2, 10, ".NaN"),
        ("a: .inf\n", 1, 4, ".inf"),
        ("a: {b: -.inf}\n", 1, 8, "-.inf"),
        ("a: +.INF\n", 1, 4, "+.INF"),
        ("a: 1.0e+999\n", 1, 4, "1.0e+999"),
        ("a: !!float .inf\n", 1, 4, ".inf"),
    ],
)
def test_nan_and_infinity_are_refused(text: str, line: int, column: int, shown: str) -> None:
    fails(text, line, column, f"'{shown}' is not a number a spec can use")


def test_huge_integers_are_a_spec_error() -> None:
    fails("a: " + "1" * 5000 + "\n", 1, 4, "cannot read '111", "as an integer")


# --------------------------------------------------------------------------------------------
# Robustness: anything either loads or raises SpecError


_PIECES = list("ab01:-[]{},&*!|>'\"#?~.\n\t %@`<=_") + [
    "\r\n", "---", "...", "<<: ", "!!int ", "!!python/object ", "&a ", "*a", ".nan", "yes",
    "\ufeff", "\x85", "é", "\u2028", "\x00", "  ", "- ", "? ",
]
_YAMLISH = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)


def _load_or_spec_error(data: str | bytes) -> None:
    try:
        load_yaml(data, FILE, max_nodes=200, max_depth=8)
    except SpecError as err:
        assert err.file == FILE
        assert "\n" not in str(err)
        assert err.line is None or err.line >= 1
        assert err.column is None or err.column >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.binary(), _YAMLISH, _YAMLISH.map(str.encode)))
def test_arbitrary_input_loads_or_raises_spec_error(data: str | bytes) -> None:
    _load_or_spec_error(data)


@settings(max_examples=100, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
))
def test_round_trip_of_plain_data(value: object) -> None:
    import yaml

    text = yaml.safe_dump({"v": value})
    loaded = load(text)
    assert isinstance(loaded, dict)
    expected = value
    assert loaded["v"] == expected or (
        isinstance(expected, float) and math.isclose(loaded["v"], expected)
    )
