"""A safe YAML loader that remembers where every key and value came from.

:func:`load_yaml` reads one YAML document into plain Python data -- ``str``, ``int``,
``float``, ``bool``, ``None``, and the position-keeping containers :class:`YMap` (a ``dict``
with ``str`` keys) and :class:`YSeq` (a ``list``) -- so that later stages can report a problem
as ``lenet.yaml:14:5: error: ...``.  Every position is a 1-based :class:`Mark`.

How it works: PyYAML's pure-Python ``SafeLoader`` scans, parses and composes the text into a
node graph (nothing is ever constructed from a tag, so no code can run); this module then
converts the nodes itself.  Scalars resolve as ``SafeLoader`` resolves them (YAML 1.1:
``yes``/``on`` are booleans, ``010`` is octal, ``1e-3`` without a dot is a string, ...), with
these differences:

* implicit timestamps (``2024-01-01``) and the odd YAML 1.1 scalars ``=`` and ``<<`` (outside
  a key) stay strings;
* NaN and infinity (``.nan``, ``-.inf``, ``1.0e999``) are refused;
* the only tags allowed are ``!!str !!int !!float !!bool !!null !!map !!seq`` (and the
  non-specific ``!``); any other tag -- ``!!python/object/...``, ``!!binary``, ``!foo`` -- is
  refused before anything is built.

Every problem raises :class:`~layerspec.errors.SpecError` with the file name and the 1-based
line and column, and a one-line message:

* data larger than ``max_bytes`` (at 1:1); bytes that are not UTF-8 (at the first bad byte; a
  UTF-8 byte-order mark is fine); NUL bytes and other characters YAML does not allow;
* an empty file, or one holding only comments or a bare ``---`` (at 1:1); a second
  document (at its start);
* PyYAML's scanner and parser errors (PyYAML's problem text, at its problem position);
* duplicate keys (at the second one); keys that are not strings (``1:``, ``on:``, ``null:``,
  ``? [a]``); anchors defined twice; aliases to undefined or enclosing anchors;
* more than ``max_nodes`` nodes -- counted while composing, and again while expanding aliases,
  so a "billion laughs" bomb is refused after ``max_nodes`` steps, at the alias that led
  there; collections nested deeper than ``max_depth`` (at the first node too deep; the check
  happens while composing, so ``[[[[...`` a hundred thousand deep never recurses deeply).

Aliases are expanded into independent copies (changing one copy never changes another).  The
mark of an expanded value in its parent (:func:`mark_of`) is the position of the ``*alias``;
the ``mark`` attribute of an expanded container, and the marks inside it, point into the
anchored definition, where its text is.

Merge keys (``<<: *defaults`` or ``<<: [*a, *b]``) are supported as in YAML 1.1 and PyYAML:
keys given explicitly win over merged ones, and earlier merged mappings win over later ones.
Merged entries keep the marks of their definition; they are placed where the ``<<`` key
stands.  A quoted ``"<<"`` is an ordinary key.

The containers also record the source text of scalar values (:attr:`YMap.value_texts`,
:attr:`YSeq.item_texts`; :func:`text_of`), so that a schema can say ``pad: 'yes' is read as a
boolean``: the text is sliced from the file as written (quotes included, anchors and tags left
off).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.events import (
    AliasEvent,
    Event,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecError

__all__ = ["Mark", "YMap", "YSeq", "key_mark_of", "load_yaml", "mark_of", "text_of"]


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in a file: 1-based ``line`` and ``column`` (counted in characters)."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


class YMap(dict[str, Any]):
    """A mapping read from YAML: a ``dict`` with ``str`` keys that knows its positions.

    Attributes:
        mark: where the mapping starts (its first key, or its ``{``).
        key_marks: the position of each key.
        value_marks: the position of each value (for an alias, the ``*alias``).
        value_texts: for each key whose value is a scalar, the value's source text.
    """

    mark: Mark | None
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]
    value_texts: dict[str, str]

    def __init__(self, items: Any = (), /, *, mark: Mark | None = None) -> None:
        super().__init__(items)
        self.mark = mark
        self.key_marks = {}
        self.value_marks = {}
        self.value_texts = {}


class YSeq(list[Any]):
    """A sequence read from YAML: a ``list`` that knows its positions.

    Attributes:
        mark: where the sequence starts (its first ``-``, or its ``[``).
        item_marks: the position of each item (for an alias, the ``*alias``).
        item_texts: for each item, its source text if it is a scalar, else ``None``.
    """

    mark: Mark | None
    item_marks: list[Mark]
    item_texts: list[str | None]

    def __init__(self, items: Iterable[Any] = (), /, *, mark: Mark | None = None) -> None:
        super().__init__(items)
        self.mark = mark
        self.item_marks = []
        self.item_texts = []


def mark_of(container: object, key_or_index: object) -> Mark | None:
    """The position of a value inside a :class:`YMap` (by key) or :class:`YSeq` (by index).

    ``None`` for a plain ``dict`` or ``list``, or a key or index that is not there.
    """
    if isinstance(container, YMap):
        return container.value_marks.get(key_or_index) if isinstance(key_or_index, str) else None
    if isinstance(container, YSeq):
        index = _seq_index(container, key_or_index)
        return None if index is None else container.item_marks[index]
    return None


def key_mark_of(ymap: object, key: object) -> Mark | None:
    """The position of ``key`` in a :class:`YMap`; ``None`` for anything else."""
    if isinstance(ymap, YMap) and isinstance(key, str):
        return ymap.key_marks.get(key)
    return None


def text_of(container: object, key_or_index: object) -> str | None:
    """The source text of a scalar value inside a :class:`YMap` or :class:`YSeq`, if known."""
    if isinstance(container, YMap):
        return container.value_texts.get(key_or_index) if isinstance(key_or_index, str) else None
    if isinstance(container, YSeq):
        index = _seq_index(container, key_or_index)
        return None if index is None else container.item_texts[index]
    return None


def _seq_index(seq: YSeq, index: object) -> int | None:
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    n = min(len(seq), len(seq.item_marks), len(seq.item_texts))
    if -n <= index < n:
        return index % n
    return None


# --------------------------------------------------------------------------------------------
# Constants

_YAML_TAG: Final = "tag:yaml.org,2002:"
_STR: Final = _YAML_TAG + "str"
_INT: Final = _YAML_TAG + "int"
_FLOAT: Final = _YAML_TAG + "float"
_BOOL: Final = _YAML_TAG + "bool"
_NULL: Final = _YAML_TAG + "null"
_MAP: Final = _YAML_TAG + "map"
_SEQ: Final = _YAML_TAG + "seq"
_MERGE: Final = _YAML_TAG + "merge"

_SCALAR_TAGS: Final = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_ALLOWED_TAGS: Final = "!!str, !!int, !!float, !!bool, !!null, !!map, !!seq"
_KIND_WORDS: Final = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean", _NULL: "null"}

# The characters YAML (and PyYAML's reader) accepts; everything else is refused up front.
_NOT_PRINTABLE: Final = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# Line breaks as PyYAML counts them ("\r\n" is one break).
_LINE_BREAK: Final = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# Anchors and tags in front of a scalar's text.
_PROPERTIES: Final = re.compile(r"(?:[&!]\S*(?:\s+|$))+")

_CONSTRUCTOR: Final = yaml.constructor.SafeConstructor()


# --------------------------------------------------------------------------------------------
# The loader


def load_yaml(
    data: bytes | str,
    filename: str,
    *,
    max_nodes: int = 100_000,
    max_depth: int = 64,
    max_bytes: int = 10_000_000,
) -> object:
    """Read the one YAML document in ``data`` (the contents of ``filename``).

    Returns plain data with :class:`YMap` for mappings and :class:`YSeq` for sequences.  The
    top-level value may be of any kind (checking that it is a mapping is the caller's job);
    an explicit ``~`` or ``null`` document gives ``None``, but a file with no content at all
    is an error.

    Raises:
        SpecError: for anything that is not a valid, safe, single YAML document of plain data
            within the limits (see the module docstring); it carries ``filename`` and the
            1-based line and column of the problem.
    """
    text = _decode(data, filename, max_bytes)
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        raise SpecError(
            f"{_describe_char(bad.group())} is not allowed in a YAML file",
            file=filename,
            **_position(text, bad.start()),
        )

    loader = _Composer(text, filename, max_nodes=max_nodes, max_depth=max_depth)
    try:
        root = loader.compose_single()
    except yaml.MarkedYAMLError as err:
        raise _from_yaml_error(err, filename) from None
    except yaml.YAMLError as err:
        raise SpecError(f"cannot read the YAML: {_one_line(str(err))}", file=filename) from None
    except RecursionError:
        raise _too_deep(filename, loader.last_mark, max_depth) from None
    finally:
        loader.dispose()

    if root is None or (
        isinstance(root, ScalarNode) and root.tag == _NULL and root.value == "" and not root.style
    ):
        raise SpecError(
            "file is empty: it holds no YAML content, only blank lines or comments",
            file=filename,
            line=1,
            column=1,
        )

    converter = _Converter(text, filename, loader, max_nodes=max_nodes, max_depth=max_depth)
    try:
        return converter.value(root, 0)
    except RecursionError:
        raise _too_deep(filename, converter.last_mark, max_depth) from None


def _decode(data: bytes | str, filename: str, max_bytes: int) -> str:
    """Check the size, decode UTF-8 and drop a byte-order mark."""
    if isinstance(data, str):
        text = data
        size: int | None = None
        if len(text) <= max_bytes:
            size = len(text.encode("utf-8", "surrogatepass"))
        if size is None or size > max_bytes:
            raise _too_large(filename, size, max_bytes)
    else:
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise _too_large(filename, len(raw), max_bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            offset = err.start
            hint = "save it as UTF-8"
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                hint = "it looks like UTF-16; save it as UTF-8"
            raise SpecError(
                f"file is not UTF-8 text: byte 0x{raw[offset]:02x} at offset {offset} is not "
                f"valid UTF-8 ({hint})",
                file=filename,
                **_position(raw[:offset].decode("utf-8"), offset),
            ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _too_large(filename: str, size: int | None, max_bytes: int) -> SpecError:
    what = f"{size} bytes" if size is not None else f"more than {max_bytes} bytes"
    return SpecError(
        f"file is too large: {what} (the limit is {max_bytes} bytes)",
        file=filename,
        line=1,
        column=1,
    )


def _position(text: str, index: int) -> dict[str, int]:
    """``line=``/``column=`` (1-based) of ``text[index]``, counting as PyYAML does."""
    prefix = text[:index]
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(prefix):
        line += 1
        start = match.end()
    column = len(prefix) - start - prefix.count("\ufeff", start) + 1
    return {"line": line, "column": column}


def _describe_char(ch: str) -> str:
    code = ord(ch)
    if code == 0:
        return "a NUL byte (U+0000)"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X})"
    if code < 0x20 or 0x7F <= code < 0xA0:
        return f"the control character U+{code:04X}"
    return f"the character U+{code:04X}"


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", message).strip()


def _quote(text: str, limit: int = 40) -> str:
    """``text`` in single quotes for a message, escaped to one line and shortened."""
    shown = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    shown = shown.replace("\t", "\\t")
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"'{shown}'"


def _mark(yaml_mark: Any) -> Mark:
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


def _error(message: str, filename: str, yaml_mark: Any) -> SpecError:
    if yaml_mark is None:
        return SpecError(message, file=filename)
    return SpecError(message, file=filename, line=yaml_mark.line + 1,
                     column=yaml_mark.column + 1)


def _from_yaml_error(err: yaml.MarkedYAMLError, filename: str) -> SpecError:
    """PyYAML's scanner/parser error as one line, at PyYAML's problem position."""
    mark = err.problem_mark if err.problem_mark is not None else err.context_mark
    message = err.problem or err.context or "invalid YAML"
    if err.problem and err.context:
        context = err.context
        cm = err.context_mark
        if cm is not None and (mark is None or (cm.line, cm.column) != (mark.line, mark.column)):
            context += f" started at line {cm.line + 1}, column {cm.column + 1}"
        message = f"{message} ({context})"
    return _error(_one_line(message), filename, mark)


def _too_deep(filename: str, yaml_mark: Any, max_depth: int) -> SpecError:
    return _error(f"nesting is too deep to read (the limit is {max_depth} levels)", filename,
                  yaml_mark)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else tag


class _AliasNode(Node):
    """An ``*alias`` in the composed graph (PyYAML would put its target there directly)."""

    id = "alias"

    def __init__(self, anchor: str, target: Node, start_mark: Any, end_mark: Any) -> None:
        super().__init__(target.tag, target, start_mark, end_mark)
        self.anchor = anchor
        self.target = target

    def __repr__(self) -> str:  # the target may contain this alias: never recurse
        return f"_AliasNode(anchor={self.anchor!r})"


def _target(node: Node) -> Node:
    return node.target if isinstance(node, _AliasNode) else node


class _Composer(yaml.SafeLoader):
    """PyYAML's safe scanner/parser/composer, with limits, tag checks and alias nodes.

    Only the composer step runs: nothing is constructed from the nodes here.
    """

    def __init__(self, text: str, filename: str, *, max_nodes: int, max_depth: int) -> None:
        super().__init__(text)
        self.spec_file = filename
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.node_count = 0
        self.depth = 0
        self.last_mark: Any = None

    def compose_single(self) -> Node | None:
        """The root node of the only document, or ``None`` for a stream with no document."""
        self.get_event()  # STREAM-START
        document = None
        if not self.check_event(StreamEndEvent):
            document = self.compose_document()
        if not self.check_event(StreamEndEvent):
            event = self.get_event()
            raise _error(
                "a second YAML document starts here; a spec file holds exactly one document "
                "(remove the extra '---')",
                self.spec_file,
                event.start_mark,
            )
        self.get_event()  # STREAM-END
        return document

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        self.last_mark = event.start_mark
        self.node_count += 1
        if self.node_count > self.max_nodes:
            raise self._fail(f"too many nodes (more than {self.max_nodes})", event)
        if isinstance(event, AliasEvent):
            self.get_event()
            target = self.anchors.get(event.anchor)
            if target is None:
                raise self._fail(
                    f"alias '*{event.anchor}' has no anchor '&{event.anchor}' before it", event
                )
            return _AliasNode(event.anchor, target, event.start_mark, event.end_mark)

        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            first = self.anchors[anchor].start_mark
            raise self._fail(
                f"anchor '&{anchor}' is defined twice (first at line {first.line + 1})", event
            )
        self._check_tag(event)
        self.descend_resolver(parent, index)
        if isinstance(event, ScalarEvent):
            node = self.compose_scalar_node(anchor)
        elif isinstance(event, SequenceStartEvent | MappingStartEvent):
            if self.depth >= self.max_depth:
                raise self._fail(f"nesting is deeper than {self.max_depth} levels", event)
            self.depth += 1
            try:
                if isinstance(event, SequenceStartEvent):
                    node = self.compose_sequence_node(anchor)
                else:
                    node = self.compose_mapping_node(anchor)
            finally:
                self.depth -= 1
        else:  # pragma: no cover - PyYAML's parser never produces this
            raise self._fail(f"unexpected YAML event {type(event).__name__}", event)
        self.ascend_resolver()
        return node

    def _check_tag(self, event: Event) -> None:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            return
        if isinstance(event, ScalarEvent):
            allowed, kind = tag in _SCALAR_TAGS, "a scalar"
        elif isinstance(event, SequenceStartEvent):
            allowed, kind = tag == _SEQ, "a sequence"
        else:
            allowed, kind = tag == _MAP, "a mapping"
        if allowed:
            return
        if tag in _SCALAR_TAGS or tag in (_SEQ, _MAP):
            raise self._fail(f"tag '{_show_tag(tag)}' cannot be used on {kind}", event)
        raise self._fail(
            f"tag '{_show_tag(tag)}' is not allowed: spec files hold plain data, never code "
            f"(the tags allowed are {_ALLOWED_TAGS})",
            event,
        )

    def _fail(self, message: str, event: Event) -> SpecError:
        return _error(message, self.spec_file, event.start_mark)


class _Converter:
    """Turns composed nodes into plain data, expanding aliases under the node and depth limits."""

    def __init__(self, text: str, filename: str, resolver: yaml.resolver.BaseResolver, *,
                 max_nodes: int, max_depth: int) -> None:
        self.text = text
        self.filename = filename
        self.resolver = resolver
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.count = 0
        self.active: set[int] = set()  # ids of the collections being converted (for cycles)
        self.alias_path: list[_AliasNode] = []  # the aliases being expanded, outermost first
        self.last_mark: Any = None
        # Expanded aliases visit the same nodes again and again: remember the immutable parts.
        # (Keyed by id(); the node graph outlives the converter, so ids are not reused.)
        self.marks: dict[int, Mark] = {}
        self.scalars: dict[int, Any] = {}
        self.texts: dict[int, str] = {}

    # ---- helpers

    def fail(self, message: str, yaml_mark: Any) -> SpecError:
        return _error(message, self.filename, yaml_mark)

    def mark(self, node: Node) -> Mark:
        """The 1-based start of ``node``."""
        mark = self.marks.get(id(node))
        if mark is None:
            mark = self.marks[id(node)] = _mark(node.start_mark)
        return mark

    def raw_text(self, node: ScalarNode) -> str:
        """A scalar's text as written in the file, without its anchor or tag."""
        raw = self.texts.get(id(node))
        if raw is None:
            raw = self.text[node.start_mark.index:node.end_mark.index]
            if raw[:1] in ("&", "!"):
                match = _PROPERTIES.match(raw)
                if match is not None:
                    raw = raw[match.end():]
            raw = self.texts[id(node)] = raw.rstrip("\r\n")
        return raw

    def text_of(self, node: Node) -> str | None:
        target = _target(node)
        return self.raw_text(target) if isinstance(target, ScalarNode) else None

    def count_node(self, node: Node) -> None:
        self.count += 1
        self.last_mark = node.start_mark
        if self.count > self.max_nodes:
            if self.alias_path:
                raise self.fail(
                    "too many nodes after expanding aliases (a YAML 'billion laughs' bomb?): "
                    f"more than {self.max_nodes}",
                    self.alias_path[0].start_mark,
                )
            raise self.fail(f"too many nodes (more than {self.max_nodes})", node.start_mark)

    def enter_alias(self, alias: _AliasNode) -> None:
        if id(alias.target) in self.active:
            raise self.fail(
                f"alias '*{alias.anchor}' is inside the node it refers to (a recursive alias)",
                alias.start_mark,
            )
        self.alias_path.append(alias)

    # ---- conversion

    def value(self, node: Node, depth: int) -> Any:
        """Convert ``node``, which sits inside ``depth`` collections."""
        if isinstance(node, _AliasNode):
            self.enter_alias(node)
            try:
                return self.value(node.target, depth)
            finally:
                self.alias_path.pop()
        self.count_node(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if depth >= self.max_depth:
            if self.alias_path:
                raise self.fail(
                    f"nesting is deeper than {self.max_depth} levels after expanding aliases",
                    self.alias_path[0].start_mark,
                )
            raise self.fail(f"nesting is deeper than {self.max_depth} levels", node.start_mark)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, depth + 1)
            return self.mapping(node, depth + 1)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode) -> Any:
        key = id(node)
        if key in self.scalars:
            return self.scalars[key]
        value = self.scalars[key] = self.construct_scalar(node)
        return value

    def construct_scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS or tag == _STR:
            return node.value  # strings, and timestamps, '=' and '<<' kept as text
        try:
            if tag == _NULL:
                if self.resolver.resolve(ScalarNode, node.value, (True, False)) != _NULL:
                    raise ValueError(node.value)
                return None
            if tag == _BOOL:
                return _CONSTRUCTOR.construct_yaml_bool(node)
            if tag == _INT:
                return _CONSTRUCTOR.construct_yaml_int(node)
            number = _CONSTRUCTOR.construct_yaml_float(node)
        except (ValueError, KeyError, IndexError):
            raise self.fail(
                f"cannot read {_quote(self.raw_text(node))} as {_KIND_WORDS[tag]}",
                node.start_mark,
            ) from None
        if not math.isfinite(number):
            raise self.fail(
                f"{_quote(self.raw_text(node))} is not a number a spec can use "
                "(NaN and infinity are not allowed)",
                node.start_mark,
            )
        return number

    def sequence(self, node: SequenceNode, depth: int) -> YSeq:
        seq = YSeq(mark=self.mark(node))
        for item in node.value:
            seq.append(self.value(item, depth))
            seq.item_marks.append(self.mark(item))
            seq.item_texts.append(self.text_of(item))
        return seq

    def key(self, key_node: Node) -> str:
        target = _target(key_node)
        if not isinstance(target, ScalarNode):
            kind = "a sequence" if isinstance(target, SequenceNode) else "a mapping"
            raise self.fail(f"keys must be strings, not {kind}", key_node.start_mark)
        self.count_node(key_node)
        key = self.scalar(target)
        if isinstance(key, str):
            return key
        raw = self.raw_text(target)
        if raw == "":
            raise self.fail("keys must be strings, but this key is empty", key_node.start_mark)
        raise self.fail(
            f"keys must be strings, but {_quote(raw)} is read as {_KIND_WORDS[target.tag]} "
            f"(write \"{raw}\" in quotes if it is meant as a name)",
            key_node.start_mark,
        )

    def mapping(self, node: MappingNode, depth: int) -> YMap:
        # First pass: convert explicit entries (checking duplicates) and merge sources, in order.
        explicit: dict[str, Mark] = {}
        entries: list[tuple[str, Mark, Any, Mark, str | None] | list[YMap]] = []
        merge_mark: Mark | None = None
        for key_node, value_node in node.value:
            kmark = self.mark(key_node)
            target = _target(key_node)
            if isinstance(target, ScalarNode) and target.tag == _MERGE:
                if merge_mark is not None:
                    raise self.fail(f"duplicate key '<<' {_first_given(merge_mark, kmark)}",
                                    key_node.start_mark)
                merge_mark = kmark
                self.count_node(key_node)
                entries.append(list(self.merge_sources(value_node, depth)))
                continue
            key = self.key(key_node)
            if key in explicit:
                raise self.fail(
                    f"duplicate key {_quote(key)} {_first_given(explicit[key], kmark)}",
                    key_node.start_mark,
                )
            explicit[key] = kmark
            value = self.value(value_node, depth)
            entries.append((key, kmark, value, self.mark(value_node),
                            self.text_of(value_node)))

        # Second pass: build the mapping; explicit keys win, then earlier merge sources.
        result = YMap(mark=self.mark(node))
        for entry in entries:
            if isinstance(entry, tuple):
                _put(result, *entry)
                continue
            for source in entry:
                for key, value in source.items():
                    if key not in explicit and key not in result:
                        _put(result, key, source.key_marks[key], value,
                             source.value_marks[key], source.value_texts.get(key))
        return result

    def merge_sources(self, node: Node, depth: int) -> Iterator[YMap]:
        """The mappings named by the value of a ``<<`` key, converted."""
        if isinstance(node, _AliasNode):
            self.enter_alias(node)
            try:
                yield from self.merge_sources(node.target, depth)
            finally:
                self.alias_path.pop()
            return
        if isinstance(node, MappingNode):
            yield self.value(node, depth)
            return
        message = "the value of a merge key '<<' must be a mapping or a list of mappings"
        if not isinstance(node, SequenceNode):
            raise self.fail(message, node.start_mark)
        self.active.add(id(node))
        try:
            for item in node.value:
                if not isinstance(_target(item), MappingNode):
                    raise self.fail(message, item.start_mark)
                yield self.value(item, depth)
        finally:
            self.active.discard(id(node))


def _first_given(first: Mark, here: Mark) -> str:
    if first.line == here.line:
        return f"(first given at line {first.line}, column {first.column})"
    return f"(first given at line {first.line})"


def _put(ymap: YMap, key: str, key_mark: Mark, value: Any, value_mark: Mark,
         text: str | None) -> None:
    ymap[key] = value
    ymap.key_marks[key] = key_mark
    ymap.value_marks[key] = value_mark
    if text is not None:
        ymap.value_texts[key] = text
