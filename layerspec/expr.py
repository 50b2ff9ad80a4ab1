"""Safe Matlab expressions: a tokenizer, a parser and an evaluator (never Python ``eval``).

Used for weight initializers in spec files (``"f*randn(5,5,1,20,'single')"``), for learning-rate
schedules (``"[0.05*ones(1,30) 0.005*ones(1,10)]"``, ``"logspace(-2,-4,60)"``) and, through
:func:`tokenize` and :class:`Parser`, by the ``.m`` porter for the right-hand sides of Matlab
statements.

Grammar (lowest to highest precedence; binary operators are left-associative)::

    expr     := or
    or       := and ('||' and)*
    and      := elor ('&&' elor)*
    elor     := eland ('|' eland)*
    eland    := cmp ('&' cmp)*
    cmp      := range (('==' | '~=' | '<' | '<=' | '>' | '>=') range)*
    range    := additive (':' additive (':' additive)?)?         # a:b  or  a:step:b
    additive := mult (('+' | '-') mult)*
    mult     := unary (('*' | '/' | '\\' | '.*' | './' | '.\\') unary)*
    unary    := ('+' | '-' | '~')* power                         # so -2^2 == -4
    power    := postfix (('^' | '.^') prefix-postfix | "'" | ".'")*   # 2^3^2 == 64, 2^-1
    postfix  := primary ( '(' args ')' | '{' args '}' | '.' NAME )*    # only after a name
    primary  := NUMBER | STRING | NAME | 'end' | '(' expr ')' | '[' rows ']' | '{' rows '}'
    args     := (':' | expr) (',' (':' | expr))*

Lexical rules follow Matlab: ``'`` right after a name, number, closing bracket or another
transpose (no space between) is the transpose operator, otherwise it starts a string (``''``
escapes a quote); double-quoted strings also work. ``%`` starts a comment, ``%{``/``%}`` on lines
of their own enclose a block comment, ``...`` continues a line. Inside ``[]``/``{}``, whitespace
separates elements: ``[1 -2]`` is two elements while ``[1 - 2]`` and ``[1-2]`` are one (a ``+``
or ``-`` with space before and none after starts a new element), ``[a (1)]`` is two elements and
``[a 'x']`` holds a string; ``,`` separates elements and ``;`` or a newline separates rows.

Every node carries ``pos``, the file position of its principal token: the operator of a
:class:`Unary`/:class:`Binary`/:class:`Range`/:class:`Transpose`, the (last) name of a
:class:`Call` target or :class:`Field`, the opening bracket of a :class:`Matrix`/:class:`Cell`.
``line``/``column`` arguments give the position of the text's first character in a larger
file; later lines of the text start at column 1.

Values (what :func:`evaluate` returns):

* a double scalar is a Python ``float``; a single scalar a ``numpy.float32``; a logical scalar a
  Python ``bool``; ``size``/``numel``/``length``/``ndims`` and ``end`` give Python ``int``.
  Arithmetic always computes in floating point, so ``size(x,1)*2`` is a ``float``.
* anything else numeric is a ``numpy.ndarray`` with at least two dimensions in Matlab's
  (column-major) sense: ``ones(1,3)`` has shape ``(1, 3)``, ``randn(5,5,1,20,'single')`` has
  shape ``(5, 5, 1, 20)`` and dtype float32. Constructors keep the shape exactly as given
  (trailing singleton dimensions included); a 1-element array stays an array, ``[x]`` is ``x``.
* strings are ``str``; cells ``{a, b}`` are ``list`` (a 2-D cell is a list of row lists);
  ``struct('a', 1)`` is a ``dict``.

Arithmetic follows Matlab: single op double gives single; elementwise operators expand
singleton dimensions (dimensions are aligned from the first, as in Matlab, not from the last as
in NumPy); ``*`` is the matrix product (elementwise when either side has one element), ``/`` and
``\\`` need a one-element divisor, ``^`` is a scalar power or an integer power of a square
matrix. Results that Matlab would make complex (``sqrt(-1)``) are NaN.

Safety: only the functions in :data:`FUNCTIONS` can be called; :data:`FORBIDDEN` names
(``eval``, ``system``, ``load``, ...) are refused with a clear message. Arrays with more than
``max_elements`` elements are refused before they are allocated, bracket nesting and expression
depth are bounded (never a ``RecursionError``), and every problem is an
:class:`~layerspec.errors.ExpressionError` with ``line``/``column`` set (``file`` is left for
the caller to fill in with ``err.located(file=...)``).
"""

from __future__ import annotations

import difflib
import math
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ExpressionError, SpecError

__all__ = [
    "DEFAULT_MAX_ELEMENTS", "FORBIDDEN", "FUNCTIONS", "MAX_DEPTH", "MAX_NESTING",
    "MAX_TEXT_LENGTH", "Binary", "Call", "Cell", "Colon", "End", "Field", "Index", "Matrix",
    "Name", "Node", "Number", "Parser", "Pos", "Range", "String", "Token", "Transpose", "Unary",
    "dotted_name", "evaluate", "iter_nodes", "normalize_define_key", "parse", "parse_define",
    "source_text", "tokenize",
]

MAX_TEXT_LENGTH = 100_000
"""Longest expression text accepted, in characters."""
MAX_NESTING = 50
"""Deepest nesting of ``()``, ``[]`` and ``{}``."""
MAX_DEPTH = 200
"""Deepest syntax tree accepted (``1+1+...+1`` with 300 terms is 300 deep)."""
DEFAULT_MAX_ELEMENTS = 50_000_000
"""Default limit on the number of elements of any array an expression creates."""


# --------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Pos:
    """A 1-based position in a file."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True)
class Token:
    """One token.

    ``kind`` is ``number`` (``value`` a float), ``string`` (``value`` the text without quotes,
    ``text`` as written), ``name``, ``op`` (operators, including ``=``, ``.``, ``@`` and the
    transposes ``'``/``.'``), ``punct`` (``( ) [ ] { } , ;``), ``newline`` or ``eof``.
    ``space_before`` tells whether whitespace (or a continuation) precedes the token,
    ``offset`` is the index of its first character in the tokenized text."""

    kind: str
    text: str
    pos: Pos
    value: Any = None
    space_before: bool = False
    offset: int = 0


_TWO_CHAR_OPS = frozenset({"==", "~=", "<=", ">=", "&&", "||", ".*", "./", ".\\", ".^", ".'"})
_ONE_CHAR_OPS = frozenset("+-*/\\^<>&|~=:.@")
_OPEN_CLOSE = {"(": ")", "[": "]", "{": "}"}
_NAME_START = frozenset(string.ascii_letters)
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_DIGITS = frozenset(string.digits)
_KEYWORDS = frozenset({
    "break", "case", "catch", "classdef", "continue", "else", "elseif", "end", "for",
    "function", "global", "if", "otherwise", "parfor", "persistent", "return", "spmd", "switch",
    "try", "while",
})


def _error(message: str, pos: Pos) -> ExpressionError:
    return ExpressionError(message, line=pos.line, column=pos.column)


class _Lexer:
    def __init__(self, text: str, line: int, column: int) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.line = line
        self.line_start = -(column - 1)  # column of index i is i - line_start + 1
        self.tokens: list[Token] = []
        self.stack: list[str] = []
        self.space = True

    def pos(self, i: int | None = None) -> Pos:
        return Pos(self.line, (self.i if i is None else i) - self.line_start + 1)

    def emit(self, kind: str, start: int, end: int, value: Any = None) -> None:
        self.tokens.append(Token(kind, self.text[start:end], self.pos(start), value, self.space,
                                 start))
        self.space = False
        self.i = end

    def newline(self) -> None:
        self.i += 2 if self.text.startswith("\r\n", self.i) else 1
        self.line += 1
        self.line_start = self.i

    def line_end(self, i: int) -> int:
        j = i
        while j < self.n and self.text[j] not in "\r\n":
            j += 1
        return j

    def run(self) -> list[Token]:
        text, n = self.text, self.n
        while self.i < n:
            i = self.i
            c = text[i]
            if c in " \t\f\v":
                self.i += 1
                self.space = True
            elif c in "\r\n":
                p = self.pos()
                self.newline()
                if not (self.stack and self.stack[-1] == "("):
                    self.tokens.append(Token("newline", "\n", p, None, self.space, i))
                self.space = True
            elif c == "%":
                self.comment()
                self.space = True
            elif text.startswith("...", i):
                self.i = self.line_end(i)
                if self.i < n:
                    self.newline()
                self.space = True
            elif c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
                self.number()
            elif c in _NAME_START:
                j = i + 1
                while j < n and text[j] in _NAME_CHARS:
                    j += 1
                self.emit("name", i, j)
            elif c == "'" and self.transpose_context():
                self.emit("op", i, i + 1)
            elif c in "'\"":
                self.string(c)
            elif text[i:i + 2] in _TWO_CHAR_OPS:
                self.emit("op", i, i + 2)
            elif c == "!":
                raise _error("unexpected character '!' (use '~' for 'not' and '~=' for "
                             "'not equal'; shell escapes are never run)", self.pos())
            elif c in _ONE_CHAR_OPS:
                self.emit("op", i, i + 1)
            elif c in _OPEN_CLOSE:
                self.stack.append(c)
                if len(self.stack) > MAX_NESTING:
                    raise _error(f"brackets are nested too deeply (more than {MAX_NESTING} "
                                 f"levels)", self.pos())
                self.emit("punct", i, i + 1)
            elif c in ")]}":
                if self.stack:
                    self.stack.pop()
                self.emit("punct", i, i + 1)
            elif c in ",;":
                self.emit("punct", i, i + 1)
            else:
                shown = c if c.isprintable() else repr(c)[1:-1]
                raise _error(f"unexpected character '{shown}'", self.pos())
        self.tokens.append(Token("eof", "", self.pos(), None, True, n))
        return self.tokens

    def transpose_context(self) -> bool:
        """Whether a ``'`` here is the transpose operator rather than the start of a string."""
        if not self.tokens:
            return False
        prev = self.tokens[-1]
        if not (prev.kind in ("name", "number")
                or (prev.kind == "punct" and prev.text in ")]}")
                or (prev.kind == "op" and prev.text in ("'", ".'"))):
            return False
        if not self.space:
            return True
        if self.stack and self.stack[-1] in "[{":
            return False
        return not (prev.kind == "name" and prev.text in _KEYWORDS)

    def number(self) -> None:
        text, n, start = self.text, self.n, self.i
        i = start
        while i < n and text[i] in _DIGITS:
            i += 1
        if i < n and text[i] == "." and not (i + 1 < n and text[i + 1] in "*/\\^'."):
            i += 1
            while i < n and text[i] in _DIGITS:
                i += 1
        if i < n and text[i] in "eE":
            j = i + 1
            if j < n and text[j] in "+-":
                j += 1
            if j < n and text[j] in _DIGITS:
                i = j
                while i < n and text[i] in _DIGITS:
                    i += 1
        if i < n and (text[i] in _NAME_CHARS or (text[i] == "." and i + 1 < n
                                                 and text[i + 1] in _DIGITS)):
            j = i
            while j < n and (text[j] in _NAME_CHARS or text[j] == "."):
                j += 1
            if text[i] in "ij" and j == i + 1:
                raise _error(f"complex numbers are not supported ('{text[start:j]}')",
                             self.pos(start))
            raise _error(f"invalid number '{text[start:j]}'", self.pos(start))
        self.emit("number", start, i, float(text[start:i]))

    def string(self, quote: str) -> None:
        text, n, start = self.text, self.n, self.i
        i = start + 1
        parts: list[str] = []
        while True:
            if i >= n or text[i] in "\r\n":
                raise _error(f"unterminated string: the closing {quote} is missing",
                             self.pos(start))
            ch = text[i]
            if ch == quote:
                if i + 1 < n and text[i + 1] == quote:
                    parts.append(quote)
                    i += 2
                    continue
                i += 1
                break
            parts.append(ch)
            i += 1
        self.emit("string", start, i, "".join(parts))

    def comment(self) -> None:
        text, i = self.text, self.i
        end = self.line_end(i)
        if text.startswith("%{", i) and text[max(self.line_start, 0):end].strip() == "%{":
            start = self.pos()
            depth = 0
            while True:
                line_text = text[max(self.line_start, 0):end].strip()
                if line_text == "%{":
                    depth += 1
                elif line_text == "%}":
                    depth -= 1
                if depth == 0:
                    break
                if end >= self.n:
                    raise _error("unterminated block comment (missing '%}')", start)
                self.i = end
                self.newline()
                end = self.line_end(self.i)
        self.i = end


def tokenize(text: str, *, line: int = 1, column: int = 1) -> list[Token]:
    """Split Matlab source into tokens, ending with an ``eof`` token.

    ``line``/``column`` give the position of the first character of ``text`` in its file.
    Comments and continuations are dropped; newlines are ``newline`` tokens except inside
    parentheses."""
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpressionError(f"expression is too long ({len(text)} characters; the limit is "
                              f"{MAX_TEXT_LENGTH})", line=line, column=column)
    return _Lexer(text, line, column).run()


# --------------------------------------------------------------------------------------------
# Syntax tree


class Node:
    """Base class of the syntax tree nodes (all frozen dataclasses with a ``pos``)."""

    __slots__ = ()
    pos: Pos


@dataclass(frozen=True)
class Number(Node):
    """A number literal; ``text`` is how it was written (``None`` for a made-up node)."""

    value: float
    text: str | None
    pos: Pos


@dataclass(frozen=True)
class String(Node):
    """A string literal (``'...'``, or ``"..."`` when ``double``)."""

    value: str
    pos: Pos
    double: bool = False


@dataclass(frozen=True)
class Name(Node):
    """A plain name: a variable, a constant such as ``pi`` or a function called without
    parentheses."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class Field(Node):
    """``target.name``; ``pos`` is the position of ``name``."""

    target: Node
    name: str
    pos: Pos


@dataclass(frozen=True)
class Call(Node):
    """``target(args)`` (a function call or indexing, which Matlab cannot tell apart) or, with
    ``braces``, ``target{args}``. ``pos`` is the position of the (last) name of ``target``."""

    target: Node
    args: tuple[Node, ...]
    pos: Pos
    braces: bool = False


Index = Call
"""Indexing is a :class:`Call` (Matlab syntax cannot tell the two apart)."""


@dataclass(frozen=True)
class Unary(Node):
    """A prefix operator: ``-``, ``+`` or ``~``."""

    op: str
    operand: Node
    pos: Pos


@dataclass(frozen=True)
class Binary(Node):
    """A binary operator (never ``:``, see :class:`Range`)."""

    op: str
    left: Node
    right: Node
    pos: Pos


@dataclass(frozen=True)
class Matrix(Node):
    """``[...]``: rows of elements."""

    rows: tuple[tuple[Node, ...], ...]
    pos: Pos


@dataclass(frozen=True)
class Cell(Node):
    """``{...}``: rows of elements."""

    rows: tuple[tuple[Node, ...], ...]
    pos: Pos


@dataclass(frozen=True)
class Range(Node):
    """``start:stop`` or ``start:step:stop``; ``pos`` is the first colon."""

    start: Node
    step: Node | None
    stop: Node
    pos: Pos


@dataclass(frozen=True)
class Transpose(Node):
    """Postfix ``'`` (or ``.'``)."""

    operand: Node
    pos: Pos
    op: str = "'"


@dataclass(frozen=True)
class Colon(Node):
    """A bare ``:`` argument, as in ``x(:, 1)``."""

    pos: Pos


@dataclass(frozen=True)
class End(Node):
    """``end`` inside an index, as in ``x(end)``."""

    pos: Pos


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Number, String, Name, Colon, End)):
        return ()
    if isinstance(node, Field):
        return (node.target,)
    if isinstance(node, Call):
        return (node.target, *node.args)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, (Matrix, Cell)):
        return tuple(e for row in node.rows for e in row)
    if isinstance(node, Range):
        return tuple(n for n in (node.start, node.step, node.stop) if n is not None)
    if isinstance(node, Transpose):
        return (node.operand,)
    raise TypeError(f"not an expression node: {node!r}")


def iter_nodes(node: Node) -> Iterator[Node]:
    """All nodes of a tree, parents before children, left to right (not recursive)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(_children(n)))


def dotted_name(node: Node) -> str | None:
    """``'a.b.c'`` for a :class:`Name`/:class:`Field` chain, ``None`` for anything else."""
    parts: list[str] = []
    while isinstance(node, Field):
        parts.append(node.name)
        node = node.target
    if not isinstance(node, Name):
        return None
    parts.append(node.name)
    return ".".join(reversed(parts))


def _check_depth(root: Node) -> None:
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _error(f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
                         node.pos)
        stack.extend((c, depth + 1) for c in _children(node))


def _start_pos(node: Node) -> Pos:
    """Position of the first character of a node's text."""
    while True:
        if isinstance(node, Binary):
            node = node.left
        elif isinstance(node, (Range,)):
            node = node.start
        elif isinstance(node, (Transpose,)):
            node = node.operand
        elif isinstance(node, (Field, Call)):
            node = node.target
        else:
            return node.pos


# --------------------------------------------------------------------------------------------
# Parser

_BINARY_PREC = {
    "||": 1, "&&": 2, "|": 3, "&": 4,
    "==": 5, "~=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5,
    "+": 7, "-": 7,
    "*": 8, "/": 8, "\\": 8, ".*": 8, "./": 8, ".\\": 8,
    "^": 10, ".^": 10,
}
_RANGE_PREC = 6
_UNARY_PREC = 9
_POSTFIX_PREC = 10
_ATOM_PREC = 11
_UNARY_OPS = ("+", "-", "~")


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "the end of the expression"
    if tok.kind == "newline":
        return "the end of the line"
    text = tok.text if len(tok.text) <= 30 else tok.text[:27] + "..."
    return f"'{text}'"


class Parser:
    """A recursive-descent parser over a token list (as made by :func:`tokenize`).

    A statement parser can drive it: look at :attr:`current`/:meth:`peek`, move with
    :meth:`advance`/:meth:`accept`/:meth:`expect`, and call :meth:`parse_expression` to parse
    one expression starting at the current token. Parsing stops before any token that cannot
    continue the expression (``=``, ``,``, ``;``, a newline, a closing bracket, ...)."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        toks = list(tokens)
        if not toks or toks[-1].kind != "eof":
            last = toks[-1].pos if toks else Pos(1, 1)
            toks.append(Token("eof", "", last, None, True, toks[-1].offset if toks else 0))
        self.tokens: list[Token] = toks
        self.index = 0
        self._ctx: list[str] = []  # "matrix" inside [] or {} literals, "group" inside () args
        self._index_depth = 0
        self._level = 0

    # -- token access -------------------------------------------------------------------

    @property
    def current(self) -> Token:
        """The token at the current position."""
        return self.tokens[self.index]

    @property
    def pos(self) -> Pos:
        """The position of the current token."""
        return self.tokens[self.index].pos

    @property
    def at_end(self) -> bool:
        """Whether the current token is ``eof``."""
        return self.tokens[self.index].kind == "eof"

    def peek(self, offset: int = 0) -> Token:
        """The token ``offset`` places after the current one (``eof`` past the end)."""
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        """Return the current token and move past it (never past ``eof``)."""
        tok = self.tokens[self.index]
        if tok.kind != "eof":
            self.index += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        """Whether the current token has this kind (and text)."""
        tok = self.tokens[self.index]
        return tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        """Consume and return the current token if it matches, else return ``None``."""
        return self.advance() if self.at(kind, text) else None

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        """Consume the current token, which must match; else raise an ExpressionError."""
        if self.at(kind, text):
            return self.advance()
        wanted = what or (f"'{text}'" if text is not None else f"a {kind}")
        raise self.error(f"expected {wanted} but found {_describe(self.current)}")

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        """An ExpressionError located at ``token`` (default: the current token)."""
        return _error(message, (token or self.current).pos)

    def skip_newlines(self) -> None:
        """Move past any ``newline`` tokens."""
        while self.at("newline"):
            self.advance()

    # -- grammar ------------------------------------------------------------------------

    def parse_expression(self) -> Node:
        """Parse one expression starting at the current token."""
        self._level += 1
        try:
            node = self._binary(0)
        finally:
            self._level -= 1
        if self._level == 0:
            _check_depth(node)
        return node

    def _in_matrix(self) -> bool:
        return bool(self._ctx) and self._ctx[-1] == "matrix"

    def _open(self, kind: str, tok: Token) -> None:
        self._ctx.append(kind)
        if len(self._ctx) > MAX_NESTING:
            raise _error(f"brackets are nested too deeply (more than {MAX_NESTING} levels)",
                         tok.pos)

    def _binary(self, min_prec: int) -> Node:
        left = self._unary()
        while True:
            tok = self.current
            if tok.kind != "op":
                return left
            op = tok.text
            if op == ":":
                if min_prec > _RANGE_PREC:
                    return left
                self.advance()
                mid = self._binary(_RANGE_PREC + 1)
                if self.at("op", ":"):
                    self.advance()
                    stop = self._binary(_RANGE_PREC + 1)
                    left = Range(left, mid, stop, tok.pos)
                else:
                    left = Range(left, None, mid, tok.pos)
                if self.at("op", ":"):
                    raise self.error("a range has at most three parts (start:step:stop); "
                                     "add parentheses")
                continue
            prec = _BINARY_PREC.get(op)
            if prec is None or prec < min_prec or prec == _BINARY_PREC["^"]:
                return left
            if (op in ("+", "-") and self._in_matrix() and tok.space_before
                    and not self.peek(1).space_before):
                return left  # [1 -2]: the '-' starts a new element
            self.advance()
            right = self._binary(prec + 1)
            left = Binary(op, left, right, tok.pos)

    def _prefixes(self) -> list[Token]:
        ops = []
        while self.current.kind == "op" and self.current.text in _UNARY_OPS:
            ops.append(self.advance())
        return ops

    def _unary(self) -> Node:
        ops = self._prefixes()
        node = self._power()
        for tok in reversed(ops):
            node = Unary(tok.text, node, tok.pos)
        return node

    def _power(self) -> Node:
        node = self._postfix()
        while self.current.kind == "op":
            tok = self.current
            if tok.text in ("^", ".^"):
                self.advance()
                ops = self._prefixes()
                exponent = self._postfix()
                for t in reversed(ops):
                    exponent = Unary(t.text, exponent, t.pos)
                node = Binary(tok.text, node, exponent, tok.pos)
            elif tok.text in ("'", ".'"):
                self.advance()
                node = Transpose(node, tok.pos, tok.text)
            else:
                break
        return node

    def _postfix(self) -> Node:
        node = self._primary()
        if not isinstance(node, Name):
            return node
        while True:
            tok = self.current
            if tok.kind == "punct" and tok.text in "({":
                if self._in_matrix() and tok.space_before:
                    return node  # [a (1)]: a new element
                node = self._call(node, tok)
            elif tok.kind == "op" and tok.text == ".":
                nxt = self.peek(1)
                if nxt.kind == "name":
                    self.advance()
                    self.advance()
                    node = Field(node, nxt.text, nxt.pos)
                elif nxt.kind == "punct" and nxt.text == "(":
                    raise self.error("dynamic field names (x.(name)) are not supported", nxt)
                else:
                    raise self.error(f"expected a field name after '.' but found "
                                     f"{_describe(nxt)}", nxt)
            else:
                return node

    def _call(self, target: Node, open_tok: Token) -> Call:
        closer = _OPEN_CLOSE[open_tok.text]
        self.advance()
        self._open("group", open_tok)
        self._index_depth += 1
        args: list[Node] = []
        self.skip_newlines()
        if not self.at("punct", closer):
            while True:
                self.skip_newlines()
                tok = self.current
                nxt = self.peek(1)
                if (tok.kind == "op" and tok.text == ":" and nxt.kind == "punct"
                        and nxt.text in (",", closer)):
                    self.advance()
                    args.append(Colon(tok.pos))
                else:
                    args.append(self._binary(0))
                self.skip_newlines()
                if not self.accept("punct", ","):
                    break
        if not self.at("punct", closer):
            if self.at_end or (self.current.kind == "punct" and self.current.text in ")]}"):
                raise self.error(f"missing '{closer}' to close '{open_tok.text}' at "
                                 f"{open_tok.pos}")
            raise self.error(f"expected ',' or '{closer}' but found {_describe(self.current)}")
        self.advance()
        self._ctx.pop()
        self._index_depth -= 1
        return Call(target, tuple(args), target.pos, braces=open_tok.text == "{")

    def _primary(self) -> Node:
        tok = self.current
        if tok.kind == "number":
            self.advance()
            return Number(tok.value, tok.text, tok.pos)
        if tok.kind == "string":
            self.advance()
            return String(tok.value, tok.pos, double=tok.text.startswith('"'))
        if tok.kind == "name":
            if tok.text == "end":
                if self._index_depth == 0:
                    raise self.error("'end' can only be used inside an index, as in x(end)")
                self.advance()
                return End(tok.pos)
            self.advance()
            return Name(tok.text, tok.pos)
        if tok.kind == "punct" and tok.text == "(":
            self.advance()
            self._open("group", tok)
            self.skip_newlines()
            inner = self._binary(0)
            self.skip_newlines()
            if not self.at("punct", ")"):
                if self.at_end or (self.current.kind == "punct" and self.current.text in "]}"):
                    raise self.error(f"missing ')' to close '(' at {tok.pos}")
                raise self.error(f"expected ')' but found {_describe(self.current)}")
            self.advance()
            self._ctx.pop()
            return inner
        if tok.kind == "punct" and tok.text in "[{":
            return self._matrix(tok)
        if tok.kind == "op" and tok.text == "@":
            raise self.error("function handles (@) are not supported")
        raise self.error(f"expected an expression but found {_describe(tok)}")

    def _matrix(self, open_tok: Token) -> Node:
        closer = _OPEN_CLOSE[open_tok.text]
        self.advance()
        self._open("matrix", open_tok)
        rows: list[tuple[Node, ...]] = []
        row: list[Node] = []
        after_comma = False
        while True:
            tok = self.current
            if tok.kind == "punct" and tok.text == closer:
                self.advance()
                break
            if tok.kind == "eof" or (tok.kind == "punct" and tok.text in ")]}"):
                raise self.error(f"missing '{closer}' to close '{open_tok.text}' at "
                                 f"{open_tok.pos}")
            if tok.kind == "newline" or (tok.kind == "punct" and tok.text == ";"):
                if row:
                    rows.append(tuple(row))
                    row = []
                after_comma = False
                self.advance()
                continue
            if tok.kind == "punct" and tok.text == ",":
                if not row or after_comma:
                    raise self.error("unexpected ','")
                after_comma = True
                self.advance()
                continue
            row.append(self._binary(0))
            after_comma = False
        if row:
            rows.append(tuple(row))
        self._ctx.pop()
        cls = Matrix if open_tok.text == "[" else Cell
        return cls(tuple(rows), open_tok.pos)


def parse(text: str, *, line: int = 1, column: int = 1) -> Node:
    """Parse ``text`` as one whole expression (anything after it is an error).

    ``line``/``column`` give the position of ``text``'s first character in its file, so that
    errors point into the file."""
    parser = Parser(tokenize(text, line=line, column=column))
    parser.skip_newlines()
    if parser.at_end:
        raise ExpressionError("empty expression", line=line, column=column)
    try:
        node = parser.parse_expression()
    except RecursionError:
        raise parser.error("expression is nested too deeply to parse") from None
    parser.skip_newlines()
    if not parser.at_end:
        raise parser.error(f"unexpected {_describe(parser.current)} after the end of the "
                           f"expression")
    return node


# --------------------------------------------------------------------------------------------
# Canonical text


def _format_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _prec(node: Node) -> int:
    if isinstance(node, Binary):
        return _BINARY_PREC[node.op]
    if isinstance(node, Range):
        return _RANGE_PREC
    if isinstance(node, Unary):
        return _UNARY_PREC
    if isinstance(node, Transpose):
        return _POSTFIX_PREC
    if isinstance(node, Number) and node.text is None and (node.value < 0
                                                           or math.isinf(node.value)):
        return _UNARY_PREC if node.value < 0 else _ATOM_PREC
    return _ATOM_PREC


def _paren(text: str, parens: bool) -> str:
    return f"({text})" if parens else text


class _Printer:
    """Canonical text of nodes, memoized per node (trees share no nodes in practice)."""

    def __init__(self) -> None:
        self.memo: dict[int, str] = {}

    def text(self, node: Node) -> str:
        key = id(node)
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = self._text(node)
        return got

    def _text(self, node: Node) -> str:  # noqa: C901
        # children are printed with self.text() directly (two frames per tree level)
        if isinstance(node, Number):
            return node.text if node.text is not None else _format_number(node.value)
        if isinstance(node, String):
            q = '"' if node.double else "'"
            return q + node.value.replace(q, q + q) + q
        if isinstance(node, Name):
            return node.name
        if isinstance(node, Colon):
            return ":"
        if isinstance(node, End):
            return "end"
        if isinstance(node, Field):
            target = _paren(self.text(node.target), _prec(node.target) < _ATOM_PREC)
            return f"{target}.{node.name}"
        if isinstance(node, Call):
            o, c = ("{", "}") if node.braces else ("(", ")")
            target = _paren(self.text(node.target), _prec(node.target) < _ATOM_PREC)
            return f"{target}{o}{','.join([self.text(a) for a in node.args])}{c}"
        if isinstance(node, (Matrix, Cell)):
            o, c = ("[", "]") if isinstance(node, Matrix) else ("{", "}")
            rows = ";".join([",".join([self.text(e) for e in row]) for row in node.rows])
            return f"{o}{rows}{c}"
        if isinstance(node, Unary):
            return node.op + _paren(self.text(node.operand), _prec(node.operand) < _POSTFIX_PREC)
        if isinstance(node, Transpose):
            return _paren(self.text(node.operand), _prec(node.operand) < _POSTFIX_PREC) + node.op
        if isinstance(node, Range):
            parts = [node.start, node.step, node.stop] if node.step is not None else [
                node.start, node.stop]
            return ":".join([_paren(self.text(p), _prec(p) <= _RANGE_PREC) for p in parts])
        if isinstance(node, Binary):
            p = _BINARY_PREC[node.op]
            left = _paren(self.text(node.left), _prec(node.left) < p)
            if p == _POSTFIX_PREC:
                # an exponent is prefix operators applied to a postfix expression: 2^-1
                inner = node.right
                while isinstance(inner, Unary):
                    inner = inner.operand
                right = _paren(self.text(node.right), _prec(inner) != _ATOM_PREC)
            else:
                right = _paren(self.text(node.right), _prec(node.right) <= p)
            return f"{left}{node.op}{right}"
        raise TypeError(f"not an expression node: {node!r}")


def source_text(node: Node) -> str:
    """The canonical text of an expression: as written but without whitespace, elements of
    ``[]``/``{}`` separated by ``,`` and rows by ``;``, and only the parentheses that the
    grammar needs. ``source_text(parse(t))`` is what :func:`evaluate` matches ``defines``
    keys against."""
    _check_depth(node)
    return _Printer().text(node)


def normalize_define_key(key: str) -> str:
    """The canonical form of a ``defines`` key: its :func:`source_text` when it parses, else
    the key with whitespace removed."""
    try:
        return source_text(parse(key))
    except ExpressionError:
        return "".join(key.split())


def parse_define(text: str, **kwargs: Any) -> tuple[str, object]:
    """Split ``'KEY=VALUE'`` (as given to ``--define``) at its first top-level ``=`` and return
    ``(normalize_define_key(KEY), evaluate(VALUE))``; ``kwargs`` go to :func:`evaluate`."""
    depth = 0
    for tok in tokenize(text):
        if tok.kind == "punct" and tok.text in "([{":
            depth += 1
        elif tok.kind == "punct" and tok.text in ")]}":
            depth -= 1
        elif tok.kind == "op" and tok.text == "=" and depth == 0:
            key = text[:tok.offset]
            if not key.strip():
                break
            value = evaluate(text[tok.offset + 1:], line=tok.pos.line,
                             column=tok.pos.column + 1, **kwargs)
            return normalize_define_key(key), value
    raise ExpressionError(f"expected KEY=VALUE (such as f=0.01 or 'size(x,1)=320'), got "
                          f"{text!r}", line=1, column=1)


# --------------------------------------------------------------------------------------------
# Values


def _fmt_count(n: int | float) -> str:
    """``50000000`` -> ``'5e7'``; small counts as plain integers."""
    if isinstance(n, float):
        if not math.isfinite(n):
            return "Inf"
        n = int(n)
    if n < 1_000_000:
        return str(n)
    digits = str(n)
    mantissa = digits[0]
    rest = digits[1:3].rstrip("0")
    if rest:
        mantissa += "." + rest
    return f"{mantissa}e{len(digits) - 1}"


def _shape_str(shape: Sequence[int]) -> str:
    shape = tuple(shape)
    if len(shape) == 0:
        shape = (1, 1)
    elif len(shape) == 1:
        shape = (1, shape[0])
    return "x".join(str(s) for s in shape)


def _type_name(v: object) -> str:
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a cell array"
    if isinstance(v, dict):
        return "a struct"
    if v is None:
        return "nothing (None)"
    if isinstance(v, np.ndarray):
        return f"a {_shape_str(v.shape)} array"
    if isinstance(v, (bool, int, float, np.generic)):
        return "a number"
    return f"a {type(v).__name__}"


def _from_python(v: object) -> object:
    """A Python value from ``names``/``defines`` in the evaluator's value model."""
    if isinstance(v, (bool, str, list, dict, int, float)):
        return v
    if isinstance(v, np.generic):
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, np.float32):
            return v
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _from_python(v[()])
        if v.ndim == 1:
            return v.reshape(1, -1)
        return v
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, Mapping):
        return dict(v)
    return v


def _scalar(x: Any) -> object:
    """A one-element NumPy result as a Python scalar (float32 stays ``numpy.float32``)."""
    a = np.asarray(x)
    if a.dtype == np.bool_:
        return bool(a.item())
    if a.dtype == np.float32:
        return np.float32(a.item())
    if a.dtype.kind in "iu":
        return int(a.item())
    return float(a.item())


def _is_scalar_value(v: object) -> bool:
    return isinstance(v, (bool, int, float, np.generic)) and not isinstance(v, str)


def _matlab_shape(v: object) -> tuple[int, ...]:
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return (1, 1)
        if v.ndim == 1:
            return (1, v.shape[0])
        return tuple(v.shape)
    if isinstance(v, (str, list)):
        return (1, len(v)) if len(v) else (0, 0)
    return (1, 1)


def _trim(shape: Sequence[int]) -> tuple[int, ...]:
    """Drop trailing singleton dimensions beyond the second, as Matlab does."""
    shape = list(shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def _as_matrix(a: np.ndarray) -> np.ndarray:
    if a.ndim >= 2:
        return a
    return a.reshape((1, 1) if a.ndim == 0 else (1, a.shape[0]))


def _to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.float64 or a.dtype == np.float32:
        return a
    return a.astype(np.float64)


def _unify(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float operands of one dtype: single if either is single (Matlab's rule)."""
    a, b = _to_float(a), _to_float(b)
    if a.dtype != b.dtype:
        a, b = a.astype(np.float32), b.astype(np.float32)
    return a, b


def _pad(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give both arrays the same number of dimensions by appending singleton ones (Matlab
    aligns dimensions from the first)."""
    if a.ndim and b.ndim and a.ndim != b.ndim:
        nd = max(a.ndim, b.ndim)
        a = a.reshape(a.shape + (1,) * (nd - a.ndim))
        b = b.reshape(b.shape + (1,) * (nd - b.ndim))
    return a, b


def _result(r: Any, scalar: bool) -> object:
    return _scalar(r) if scalar else np.asarray(r)


_ELEMENTWISE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, ".*": np.multiply, "./": np.divide,
    ".\\": lambda a, b: np.divide(b, a), ".^": np.power,
}
_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal, "~=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal,
    "&": lambda a, b: np.logical_and(a != 0, b != 0),
    "|": lambda a, b: np.logical_or(a != 0, b != 0),
}

FORBIDDEN = frozenset({
    "eval", "evalin", "evalc", "feval", "system", "unix", "dos", "load", "save", "str2func",
    "func2str", "builtin", "assignin", "run", "input", "keyboard", "delete", "rmdir", "mkdir",
    "movefile", "copyfile", "fopen", "fclose", "fread", "fwrite", "fprintf", "fscanf", "fgetl",
    "fgets", "textscan", "importdata", "cd", "web", "inline", "py", "pyrun", "pyrunfile",
    "javaObject", "javaMethod", "javaArray", "NET", "perl", "python", "urlread", "urlwrite",
    "webread", "websave", "webwrite", "clear", "exit", "quit", "setenv", "getenv", "exist",
    "which", "addpath", "rmpath", "vl_setupnn", "cellfun", "arrayfun", "structfun",
})
"""Names that are refused outright: layerspec never runs Matlab code."""


class _Colon:
    """The value of a bare ``:`` index argument."""


_COLON = _Colon()


# --------------------------------------------------------------------------------------------
# Function calls


class _CallCtx:
    """What a whitelisted function sees: its evaluated arguments and how to report errors."""

    def __init__(self, ev: _Evaluator, name: str, node: Node, arg_nodes: Sequence[Node],
                 args: list[object]) -> None:
        self.ev = ev
        self.name = name
        self.node = node
        self.arg_nodes = arg_nodes
        self.args = args

    def error(self, message: str, arg: int | None = None) -> ExpressionError:
        pos = _start_pos(self.arg_nodes[arg]) if arg is not None else self.node.pos
        return _error(f"{self.name}: {message}", pos)

    def nargs(self, lo: int, hi: int | None = None) -> None:
        n = len(self.args)
        hi = lo if hi is None else hi
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else (f"{lo} to {hi}" if hi < 99 else f"at least {lo}")
            raise self.error(f"expected {want} argument{'s' if want != '1' else ''}, got {n}")

    def num(self, i: int) -> np.ndarray:
        return self.ev.numeric(self.args[i], _start_pos(self.arg_nodes[i]),
                               f"argument {i + 1} of {self.name}")

    def scalar(self, i: int) -> float:
        a = self.num(i)
        if a.size != 1:
            raise self.error(f"argument {i + 1} must be a single number, got a "
                             f"{_shape_str(a.shape)} array", i)
        return float(a.item())

    def integer(self, i: int, *, minimum: int = 1, what: str = "argument") -> int:
        v = self.scalar(i)
        if not math.isfinite(v) or v != math.floor(v) or v < minimum:
            raise self.error(f"{what} must be an integer >= {minimum}, got {v:g}", i)
        return int(v)

    def text(self) -> str:
        return self.ev.text_of(self.node)

    def check_count(self, count: int) -> None:
        self.ev.check_count(count, self.node)

    def size_args(self, args: Sequence[object], first: int = 0,
                  ) -> tuple[tuple[int, ...] | None, str | None]:
        """Matlab size arguments (``n``, ``m,n,...`` or ``[m n ...]``) and a trailing class
        name; ``None`` for no sizes at all."""
        cls = None
        args = list(args)
        if args and isinstance(args[-1], str):
            cls = args.pop().lower()
        for k, a in enumerate(args):
            if isinstance(a, str):
                raise self.error(f"unexpected text argument '{a}'", first + k)
        if not args:
            return None, cls
        if len(args) == 1:
            a = self.num(first)
            if a.size == 1:
                n = self._dim(a.item(), first)
                return (n, n), cls
            if a.size == 0:
                return (0, 0), cls
            if a.ndim > 2 or min(a.shape) != 1:
                raise self.error(f"a size vector must be a row vector, got a "
                                 f"{_shape_str(a.shape)} array", first)
            dims = tuple(self._dim(x, first) for x in a.reshape(-1).tolist())
            return (dims if len(dims) > 1 else (dims[0], dims[0])), cls
        dims_l = []
        for k in range(len(args)):
            a = self.num(first + k)
            if a.size != 1:
                raise self.error(f"size arguments must be single numbers, got a "
                                 f"{_shape_str(a.shape)} array", first + k)
            dims_l.append(self._dim(a.item(), first + k))
        return tuple(dims_l), cls

    def _dim(self, v: Any, arg: int) -> int:
        v = float(v)
        if math.isnan(v):
            raise self.error("a size must not be NaN", arg)
        if math.isinf(v):
            raise self.error("a size must be finite", arg)
        if v != math.floor(v):
            raise self.error(f"sizes must be integers, got {v:g}", arg)
        return max(int(v), 0)


_CLASSES: dict[str, Any] = {
    "double": np.float64, "single": np.float32, "logical": np.bool_,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
}


def _dtype(c: _CallCtx, cls: str | None, allowed: Sequence[str]) -> Any:
    if cls is None:
        return np.float64
    if cls not in allowed:
        if cls in _CLASSES:
            raise c.error(f"class '{cls}' is not supported here; use "
                          + ", ".join(f"'{a}'" for a in allowed))
        raise c.error(f"unknown class '{cls}'; use " + ", ".join(f"'{a}'" for a in allowed))
    return _CLASSES[cls]


def _filled(kind: str) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        shape, cls = c.size_args(c.args)
        if kind in ("rand", "randn", "Inf", "NaN"):
            dtype = _dtype(c, cls, ("double", "single"))
        elif kind in ("true", "false"):
            if cls is not None:
                raise c.error(f"unexpected text argument '{cls}'", len(c.args) - 1)
            dtype = np.bool_
        else:
            dtype = _dtype(c, cls, tuple(_CLASSES))
        if shape is not None:
            c.check_count(math.prod(shape))
        size = shape if shape is not None else ()
        if kind in ("rand", "randn"):
            rng = c.ev.rng
            if rng is None:
                raise c.error("needs a random number generator, but none was given")
            if kind == "randn":
                out = rng.standard_normal(size, dtype=dtype)
            else:
                out = rng.random(size, dtype=dtype)
        else:
            fill = {"zeros": 0, "ones": 1, "Inf": np.inf, "NaN": np.nan, "true": True,
                    "false": False}[kind]
            out = np.full(size, fill, dtype=dtype)
        return _scalar(out) if shape is None else out
    return impl


def _constant(value: Callable[[], object]) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        c.nargs(0)
        return value()
    return impl


def _eps(c: _CallCtx) -> object:
    c.nargs(0, 1)
    if not c.args:
        return float(np.finfo(np.float64).eps)
    a = c.args[0]
    if isinstance(a, str):
        if a.lower() == "single":
            return np.float32(np.finfo(np.float32).eps)
        if a.lower() == "double":
            return float(np.finfo(np.float64).eps)
        raise c.error(f"unknown class '{a}'; use 'single' or 'double'", 0)
    x = _to_float(c.num(0))
    return _result(np.spacing(np.abs(x)), _is_scalar_value(c.args[0]))


def _unary_fn(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        c.nargs(1)
        return _result(fn(_to_float(c.num(0))), _is_scalar_value(c.args[0]))
    return impl


def _matlab_round(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _round(c: _CallCtx) -> object:
    c.nargs(1, 2)
    x = _to_float(c.num(0))
    if len(c.args) == 2:
        d = c.integer(1, minimum=-300, what="the number of digits")
        s = x.dtype.type(10.0) ** d
        r = _matlab_round(x * s) / s
    else:
        r = _matlab_round(x)
    return _result(r, _is_scalar_value(c.args[0]))


def _binary_fn(name: str) -> Callable[[_CallCtx], object]:
    def mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(b == 0, a, np.mod(a, np.where(b == 0, 1, b)))

    fns: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "mod": mod, "rem": np.fmod, "atan2": np.arctan2, "hypot": np.hypot, "power": np.power,
    }

    def impl(c: _CallCtx) -> object:
        c.nargs(2)
        return c.ev.elementwise(fns[name], c.args[0], c.args[1], c.node, name)
    return impl


def _cast(dtype: Any) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        c.nargs(1)
        a = c.num(0)
        r = (a != 0) if dtype is np.bool_ else a.astype(dtype)
        return _result(r, _is_scalar_value(c.args[0]))
    return impl


def _size(c: _CallCtx) -> object:
    c.nargs(1, 2)
    shape = _matlab_shape(c.args[0])
    if len(c.args) == 2:
        d = c.integer(1, what="the dimension")
        return shape[d - 1] if d <= len(shape) else 1
    return np.array([_trim(shape)], dtype=np.int64)


def _numel(c: _CallCtx) -> object:
    c.nargs(1)
    return math.prod(_matlab_shape(c.args[0]))


def _length(c: _CallCtx) -> object:
    c.nargs(1)
    shape = _matlab_shape(c.args[0])
    return 0 if 0 in shape else max(shape)


def _ndims(c: _CallCtx) -> object:
    c.nargs(1)
    return len(_trim(_matlab_shape(c.args[0])))


def _isempty(c: _CallCtx) -> object:
    c.nargs(1)
    return 0 in _matlab_shape(c.args[0])


def _pack(r: np.ndarray) -> object:
    """A reduction's result: a scalar when it has one element, else trimmed like Matlab."""
    if r.size == 1:
        return _scalar(r)
    return r.reshape(_trim(r.shape))


def _reduction(name: str) -> Callable[[_CallCtx], object]:
    empty = {"sum": 0.0, "prod": 1.0, "mean": float("nan")}
    fns: dict[str, Callable[..., np.ndarray]] = {
        "sum": np.sum, "prod": np.prod, "mean": np.mean,
        "max": np.fmax.reduce, "min": np.fmin.reduce,
    }

    def impl(c: _CallCtx) -> object:
        if name in ("max", "min"):
            c.nargs(1, 3)
            if len(c.args) == 2:
                fn2 = np.fmax if name == "max" else np.fmin
                return c.ev.elementwise(fn2, c.args[0], c.args[1], c.node, name)
            if len(c.args) == 3:
                if np.asarray(c.num(1)).size != 0:
                    raise c.error(f"the second argument must be [] when a dimension is given, "
                                  f"as in {name}(x, [], 2)", 1)
                dim: int | None = c.integer(2, what="the dimension")
            else:
                dim = None
        else:
            c.nargs(1, 2)
            dim = c.integer(1, what="the dimension") if len(c.args) == 2 else None
        a = _as_matrix(_to_float(c.num(0)))
        if dim is None:
            if a.shape == (0, 0):
                return empty[name] if name in empty else np.zeros((0, 0))
            dim = next((k + 1 for k, s in enumerate(a.shape) if s != 1), 1)
        if dim > a.ndim:
            return _pack(a)
        if a.shape[dim - 1] == 0 and name in ("max", "min"):
            shape = list(a.shape)
            shape[dim - 1] = 0
            return np.zeros(shape)
        r = fns[name](a, axis=dim - 1, keepdims=True)
        return _pack(np.asarray(r))
    return impl


def _linspace(log: bool) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        c.nargs(2, 3)
        lo, hi = c.scalar(0), c.scalar(1)
        if len(c.args) == 3:
            nf = c.scalar(2)
            if math.isnan(nf):
                raise c.error("the number of points must not be NaN", 2)
            c.check_count(nf)
            n = max(int(math.floor(nf)), 0) if math.isfinite(nf) else 0
        else:
            n = 50 if log else 100
        c.check_count(n)
        single = any(np.asarray(c.num(k)).dtype == np.float32 for k in (0, 1))
        dtype = np.float32 if single else np.float64
        if n == 1:
            out = np.array([hi], dtype=np.float64)
        else:
            out = np.linspace(lo, hi, n)
        if log:
            out = 10.0 ** out
        return out.astype(dtype).reshape(1, n)
    return impl


def _repmat(c: _CallCtx) -> object:
    if len(c.args) < 2:
        c.nargs(2, 99)
    reps, cls = c.size_args(c.args[1:], first=1)
    if cls is not None:
        raise c.error(f"unexpected text argument '{cls}'", len(c.args) - 1)
    assert reps is not None
    a = _as_matrix(c.num(0))
    c.check_count(a.size * math.prod(reps))
    nd = max(a.ndim, len(reps))
    a = a.reshape(a.shape + (1,) * (nd - a.ndim))
    return np.tile(a, tuple(reps) + (1,) * (nd - len(reps)))


def _concat_values(c: _CallCtx, values: Sequence[object], dim: int,
                   arg_offset: int) -> object:
    return c.ev.concat(values, dim, c.node, [_start_pos(n) for n in c.arg_nodes[arg_offset:]])


def _cat(c: _CallCtx) -> object:
    if not c.args:
        c.nargs(1, 99)
    dim = c.integer(0, what="the dimension")
    return _concat_values(c, c.args[1:], dim, 1)


def _horzcat(dim: int) -> Callable[[_CallCtx], object]:
    def impl(c: _CallCtx) -> object:
        return _concat_values(c, c.args, dim, 0)
    return impl


def _reshape(c: _CallCtx) -> object:
    if len(c.args) < 2:
        c.nargs(2, 99)
    a = _as_matrix(c.num(0))
    dims: list[int | None] = []
    if len(c.args) == 2:
        v = c.num(1)
        if v.size < 2:
            raise c.error("the size vector needs at least two elements", 1)
        dims = [c._dim(x, 1) for x in v.reshape(-1).tolist()]
    else:
        for k in range(1, len(c.args)):
            v = c.num(k)
            if v.size == 0:
                dims.append(None)
            elif v.size == 1:
                dims.append(c._dim(v.item(), k))
            else:
                raise c.error("size arguments must be single numbers or []", k)
    unknown = [k for k, d in enumerate(dims) if d is None]
    if len(unknown) > 1:
        raise c.error("only one size can be [] (computed from the others)")
    known = math.prod(d for d in dims if d is not None)
    if unknown:
        if known == 0 or a.size % known:
            raise c.error(f"cannot reshape a {_shape_str(a.shape)} array ({a.size} elements) "
                          f"into pieces of {known}")
        dims[unknown[0]] = a.size // known
    shape = tuple(int(d) for d in dims if d is not None)
    if math.prod(shape) != a.size:
        raise c.error(f"cannot reshape a {_shape_str(a.shape)} array ({a.size} elements) into "
                      f"{_shape_str(shape)} ({math.prod(shape)} elements)")
    return a.reshape(shape, order="F")


def _cell(c: _CallCtx) -> object:
    shape, cls = c.size_args(c.args)
    if cls is not None:
        raise c.error(f"unexpected text argument '{cls}'", len(c.args) - 1)
    if shape is None:
        shape = (1, 1)
    c.check_count(math.prod(shape))
    if len(_trim(shape)) > 2:
        raise c.error("cells with more than two dimensions are not supported")
    rows, cols = shape[0], shape[1]
    if rows == 1 or cols == 1 or rows * cols == 0:
        return [np.zeros((0, 0)) for _ in range(rows * cols)]
    return [[np.zeros((0, 0)) for _ in range(cols)] for _ in range(rows)]


def _struct(c: _CallCtx) -> object:
    if len(c.args) % 2:
        raise c.error("expected name, value pairs")
    out: dict[str, object] = {}
    for k in range(0, len(c.args), 2):
        key, value = c.args[k], c.args[k + 1]
        if not (isinstance(key, str) and key.isidentifier()):
            raise c.error(f"argument {k + 1} must be a field name", k)
        if isinstance(value, list):
            if len(value) != 1:
                raise c.error(f"field '{key}': a cell with {len(value)} elements would make a "
                              f"struct array, which is not supported (wrap it: {{{{...}}}})",
                              k + 1)
            value = value[0]
        out[key] = value
    return out


FUNCTIONS: dict[str, Callable[[_CallCtx], object]] = {
    "zeros": _filled("zeros"), "ones": _filled("ones"), "rand": _filled("rand"),
    "randn": _filled("randn"), "Inf": _filled("Inf"), "inf": _filled("Inf"),
    "NaN": _filled("NaN"), "nan": _filled("NaN"), "true": _filled("true"),
    "false": _filled("false"),
    "pi": _constant(lambda: math.pi), "eps": _eps,
    "sqrt": _unary_fn(np.sqrt), "exp": _unary_fn(np.exp), "log": _unary_fn(np.log),
    "log2": _unary_fn(np.log2), "log10": _unary_fn(np.log10), "abs": _unary_fn(np.abs),
    "floor": _unary_fn(np.floor), "ceil": _unary_fn(np.ceil), "round": _round,
    "fix": _unary_fn(np.trunc), "sign": _unary_fn(np.sign), "sin": _unary_fn(np.sin),
    "cos": _unary_fn(np.cos), "tan": _unary_fn(np.tan), "tanh": _unary_fn(np.tanh),
    "atan": _unary_fn(np.arctan),
    "mod": _binary_fn("mod"), "rem": _binary_fn("rem"), "atan2": _binary_fn("atan2"),
    "hypot": _binary_fn("hypot"), "power": _binary_fn("power"),
    "single": _cast(np.float32), "double": _cast(np.float64), "logical": _cast(np.bool_),
    "size": _size, "numel": _numel, "length": _length, "ndims": _ndims, "isempty": _isempty,
    "sum": _reduction("sum"), "prod": _reduction("prod"), "mean": _reduction("mean"),
    "max": _reduction("max"), "min": _reduction("min"),
    "linspace": _linspace(False), "logspace": _linspace(True),
    "repmat": _repmat, "cat": _cat, "horzcat": _horzcat(2), "vertcat": _horzcat(1),
    "reshape": _reshape, "cell": _cell, "struct": _struct,
}
"""The functions (and constants) an expression can call; nothing else is callable."""


# --------------------------------------------------------------------------------------------
# Evaluator


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _held_size(v: object) -> int:
    """Elements of an evaluated value: arrays, and the arrays in cells and structs."""
    if isinstance(v, np.ndarray):
        return int(v.size)
    if isinstance(v, list):
        return sum(_held_size(x) for x in v)
    if isinstance(v, dict):
        return sum(_held_size(x) for x in v.values())
    return 0


class _Evaluator:
    def __init__(self, root: Node, names: Mapping[str, object] | None,
                 rng: np.random.Generator | None, defines: Mapping[str, object] | None,
                 max_elements: int, source: str) -> None:
        self.root = root
        self.names = dict(names or {})
        self.rng = rng
        self.defines = {normalize_define_key(str(k)): _from_python(v)
                        for k, v in (defines or {}).items()}
        self.max_elements = int(max_elements)
        #: elements of the values evaluated and kept while a sibling is evaluated (operands,
        #: arguments, cell and matrix elements): they count against the limit too
        self.held = 0
        self.source = _shorten(source)
        self.printer = _Printer()
        self.end_stack: list[tuple[object, int, int]] = []
        self.dispatch: dict[type, Callable[[Any], object]] = {
            Number: lambda n: float(n.value), String: lambda n: n.value,
            Name: self._name, Field: self._field, Call: self._call, Unary: self._unary,
            Binary: self._binary, Matrix: self._matrix, Cell: self._cell, Range: self._range,
            Transpose: self._transpose, Colon: self._colon, End: self._end,
        }

    # -- helpers ------------------------------------------------------------------------

    def text_of(self, node: Node) -> str:
        return _shorten(self.printer.text(node))

    def check_count(self, count: int | float, node: Node) -> None:
        if count > self.max_elements:
            raise _error(f"{self.text_of(node)} would have {_fmt_count(count)} elements; the "
                         f"limit is {_fmt_count(self.max_elements)}", node.pos)
        if count + self.held > self.max_elements:
            raise _error(f"{self.text_of(node)} would have {_fmt_count(count)} elements while "
                         f"the expression around it holds {_fmt_count(self.held)}; the limit "
                         f"is {_fmt_count(self.max_elements)} in all", node.pos)

    def eval_held(self, nodes: Sequence[Node]) -> list[object]:
        """Evaluate ``nodes`` in turn; each value counts as held (:meth:`check_count`) while
        the next ones are evaluated, so that no expression keeps more than the limit alive."""
        values: list[object] = []
        added = 0
        try:
            for n in nodes:
                v = self.eval(n)
                size = _held_size(v)
                added += size
                self.held += size
                values.append(v)
        finally:
            self.held -= added
        return values

    def numeric(self, v: object, pos: Pos, what: str) -> np.ndarray:
        if isinstance(v, np.ndarray):
            a = v
        elif _is_scalar_value(v):
            a = np.asarray(v)
        else:
            raise _error(f"cannot use {_type_name(v)} as {what}", pos)
        if a.dtype.kind not in "biuf":
            kind = "complex values" if a.dtype.kind == "c" else f"{a.dtype} arrays"
            raise _error(f"{kind} cannot be used as {what}", pos)
        return a

    def _wrap(self, exc: Exception, node: Node, what: str) -> ExpressionError:
        msg = str(exc) or type(exc).__name__
        return _error(f"{what}: {msg}", node.pos)

    # -- dispatch -----------------------------------------------------------------------

    def eval(self, node: Node) -> object:
        if self.defines:
            key = self.printer.text(node)
            if key in self.defines:
                return self.defines[key]
        fn = self.dispatch.get(type(node))
        if fn is None:
            raise TypeError(f"not an expression node: {node!r}")
        return fn(node)

    def _colon(self, node: Colon) -> object:
        raise _error("':' on its own can only be used as an index, as in x(:, 1)", node.pos)

    def _end(self, node: End) -> object:
        if not self.end_stack:
            raise _error("'end' can only be used when indexing a variable, as in x(end)",
                         node.pos)
        value, i, k = self.end_stack[-1]
        shape = _matlab_shape(value)
        if k == 1:
            return math.prod(shape)
        if i < k - 1:
            return shape[i] if i < len(shape) else 1
        return math.prod(shape[i:]) if i < len(shape) else 1

    # -- names --------------------------------------------------------------------------

    def _suggestion_target(self, node: Node) -> str:
        """The smallest enclosing function call with ``node`` among its arguments (the thing
        a user would most usefully define), else the name itself."""
        parents: dict[int, Node] = {}
        for n in iter_nodes(self.root):
            for ch in _children(n):
                parents[id(ch)] = n
        child = node
        while id(child) in parents:
            parent = parents[id(child)]
            if (isinstance(parent, Call) and parent.target is not child
                    and isinstance(parent.target, Name)
                    and parent.target.name in FUNCTIONS
                    and parent.target.name not in self.names):
                return self.text_of(parent)
            child = parent
        return self.text_of(node)

    def _unknown(self, node: Name, call: Call | None = None) -> ExpressionError:
        n = node.name
        pool = set(self.names) | {k for k in self.defines if k.isidentifier()}
        if call is not None:
            pool |= set(FUNCTIONS)
        else:
            pool |= {"pi", "eps", "Inf", "NaN", "true", "false"}
        close = difflib.get_close_matches(n, sorted(pool), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        what = "name" if call is None else "function"
        target = self._suggestion_target(node if call is None else call)
        define = f"{target}=VALUE" if target.isidentifier() else f"'{target}=VALUE'"
        return _error(f"unknown {what} '{n}' in '{self.source}'{hint} (define it, e.g. "
                      f"--define {define})", node.pos)

    def _forbidden(self, node: Name) -> ExpressionError:
        return _error(f"'{node.name}' is not allowed: layerspec never runs Matlab code",
                      node.pos)

    def _lookup(self, node: Name) -> tuple[bool, object]:
        n = node.name
        if n in self.defines:
            return True, self.defines[n]
        if n in self.names:
            return True, _from_python(self.names[n])
        if n in FORBIDDEN:
            raise self._forbidden(node)
        return False, None

    def _name(self, node: Name) -> object:
        found, value = self._lookup(node)
        if found:
            return value
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            raise self._unknown(node)
        return self._apply(fn, node.name, node, (), [])

    def _field(self, node: Field) -> object:
        base = self.eval(node.target)
        if isinstance(base, dict):
            if node.name in base:
                return _from_python(base[node.name])
            close = difflib.get_close_matches(node.name, [str(k) for k in base], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return self._raise(f"'{self.text_of(node.target)}' has no field '{node.name}' in "
                               f"'{self.source}'{hint}", node)
        return self._raise(f"cannot take field '{node.name}' of {_type_name(base)} "
                           f"('{self.text_of(node.target)}')", node)

    def _raise(self, message: str, node: Node) -> object:
        raise _error(message, node.pos)

    # -- calls and indexing -------------------------------------------------------------

    def _apply(self, fn: Callable[[_CallCtx], object], name: str, node: Node,
               arg_nodes: Sequence[Node], args: list[object]) -> object:
        ctx = _CallCtx(self, name, node, arg_nodes, args)
        try:
            with np.errstate(all="ignore"):
                return fn(ctx)
        except SpecError:
            raise
        except Exception as exc:
            raise self._wrap(exc, node, name) from None

    def _call(self, node: Call) -> object:
        target = node.target
        if isinstance(target, Name):
            found, base = self._lookup(target)
            if not found:
                fn = FUNCTIONS.get(target.name)
                if fn is None:
                    raise self._unknown(target, node)
                if node.braces:
                    raise _error(f"'{target.name}' is a function; use {target.name}(...), "
                                 f"not {target.name}{{...}}", node.pos)
                args = self.eval_held(node.args)
                return self._apply(fn, target.name, node, node.args, args)
        else:
            base = self.eval(target)
        k = len(node.args)
        idx: list[object] = []
        base_size = _held_size(base)
        self.held += base_size
        try:
            for i, a in enumerate(node.args):
                if isinstance(a, Colon):
                    idx.append(_COLON)
                    continue
                self.end_stack.append((base, i, k))
                try:
                    idx.extend(self.eval_held([a]))
                finally:
                    self.end_stack.pop()
        finally:
            self.held -= base_size
        try:
            with np.errstate(all="ignore"):
                return self._index(base, idx, node)
        except SpecError:
            raise
        except Exception as exc:
            raise self._wrap(exc, node, "indexing") from None

    def _positions(self, v: object, extent: int, node: Node, arg: int,
                   ) -> tuple[np.ndarray, tuple[int, ...] | None, bool, bool]:
        """0-based positions (column-major) for one index argument, the index's shape, whether
        it is a single number, whether it is a logical mask."""
        pos = _start_pos(node.args[arg]) if isinstance(node, Call) else node.pos
        if v is _COLON:
            return np.arange(extent), None, False, False
        if isinstance(v, str):
            raise _error(f"cannot index with the string '{v}'", pos)
        a = self.numeric(v, pos, "an index")
        if a.dtype == np.bool_:
            flat = a.reshape(-1, order="F")
            if flat.size > extent and flat[extent:].any():
                raise _error(f"logical index is longer ({flat.size}) than the dimension "
                             f"({extent})", pos)
            return np.flatnonzero(flat), None, False, True
        flat = _to_float(a).reshape(-1, order="F")
        bad = ~np.isfinite(flat) | (flat != np.floor(flat)) | (flat < 1) | (flat > extent)
        if bad.any():
            x = float(flat[np.argmax(bad)])
            if not math.isfinite(x) or x != math.floor(x):
                raise _error(f"index {x:g} is not a positive integer", pos)
            if x < 1:
                raise _error(f"index {x:g} is not valid; indices start at 1", pos)
            raise _error(f"index {x:g} is out of bounds (the size is {extent})", pos)
        shape = _matlab_shape(a) if a.ndim != 0 else None
        return flat.astype(np.int64) - 1, shape, a.ndim == 0, False

    def _index(self, base: object, idx: list[object], node: Call) -> object:
        if not idx:
            return base
        if isinstance(base, dict):
            for i, v in enumerate(idx):
                p, _, _, _ = self._positions(v, 1, node, i)
                if p.size != 1:
                    raise _error("struct arrays are not supported", node.pos)
            return base
        if node.braces and not isinstance(base, list):
            raise _error(f"'{{}}' indexing needs a cell array, but "
                         f"'{self.text_of(node.target)}' is {_type_name(base)}", node.pos)
        if isinstance(base, list):
            arr = np.empty((1, len(base)), dtype=object)
            for j, item in enumerate(base):
                arr[0, j] = item
        elif isinstance(base, str):
            arr = np.array(list(base), dtype="<U1").reshape(1, len(base))
        else:
            arr = _as_matrix(self.numeric(base, node.pos, "an indexed value"))
        out, scalar = self._index_array(arr, idx, node)
        if isinstance(base, list):
            items = list(out.reshape(-1, order="F"))
            if node.braces:
                if len(items) != 1:
                    raise _error(f"'{{}}' must pick exactly one cell here, not {len(items)}",
                                 node.pos)
                return _from_python(items[0])
            return items
        if isinstance(base, str):
            return "".join(out.reshape(-1, order="F").tolist())
        return _scalar(out) if scalar else out

    def _index_array(self, a: np.ndarray, idx: list[object], node: Call,
                     ) -> tuple[np.ndarray, bool]:
        k = len(idx)
        if k == 1:
            flat = a.reshape(-1, order="F")
            if idx[0] is _COLON:
                return flat.reshape(-1, 1), False
            p, ishape, scalar, mask = self._positions(idx[0], flat.size, node, 0)
            vals = flat[p]
            if scalar:
                return vals.reshape(1, 1), True
            is_vector = a.ndim == 2 and 1 in a.shape and a.size != 1
            if mask or (is_vector and ishape is not None and len(ishape) == 2
                        and 1 in ishape):
                if mask and not is_vector:
                    shape: tuple[int, ...] = (vals.size, 1)
                else:
                    shape = (1, vals.size) if a.shape[0] == 1 else (vals.size, 1)
            else:
                shape = ishape if ishape is not None else (vals.size, 1)
            return vals.reshape(shape, order="F"), False
        dims = list(a.shape)
        if k < len(dims):
            eff = dims[:k - 1] + [math.prod(dims[k - 1:])]
        else:
            eff = dims + [1] * (k - len(dims))
        b = a.reshape(eff, order="F")
        positions = []
        all_scalar = True
        for i, v in enumerate(idx):
            p, _, scalar, _ = self._positions(v, eff[i], node, i)
            all_scalar = all_scalar and scalar
            positions.append(p)
        self.check_count(math.prod(p.size for p in positions), node)
        out = b[np.ix_(*positions)]
        return out.reshape(_trim(out.shape)), all_scalar

    # -- operators ----------------------------------------------------------------------

    def elementwise(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: object,
                    y: object, node: Node, label: str, *, floats: bool = True) -> object:
        a = self.numeric(x, node.pos, f"an operand of '{label}'")
        b = self.numeric(y, node.pos, f"an operand of '{label}'")
        scalar = a.ndim == 0 and b.ndim == 0
        if floats:
            a, b = _unify(a, b)
        a, b = _pad(a, b)
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise _error(f"sizes do not match for '{label}': {_shape_str(a.shape)} and "
                         f"{_shape_str(b.shape)}", node.pos) from None
        self.check_count(math.prod(shape), node)
        with np.errstate(all="ignore"):
            return _result(fn(a, b), scalar)

    def _binary(self, node: Binary) -> object:
        op = node.op
        if op in ("&&", "||"):
            left = self._truth(self.eval(node.left), node)
            if (op == "&&" and not left) or (op == "||" and left):
                return left
            return self._truth(self.eval(node.right), node)
        x, y = self.eval_held([node.left, node.right])
        try:
            if op in _ELEMENTWISE:
                return self.elementwise(_ELEMENTWISE[op], x, y, node, op)
            if op in _COMPARE:
                return self.elementwise(_COMPARE[op], x, y, node, op, floats=False)
            return self._matrix_op(op, x, y, node)
        except SpecError:
            raise
        except Exception as exc:
            raise self._wrap(exc, node, f"'{op}'") from None

    def _truth(self, v: object, node: Binary) -> bool:
        a = self.numeric(v, node.pos, f"an operand of '{node.op}'")
        if a.size != 1:
            raise _error(f"operands of '{node.op}' must be single values, got a "
                         f"{_shape_str(a.shape)} array", node.pos)
        return bool(a.item() != 0)

    def _matrix_op(self, op: str, x: object, y: object, node: Binary) -> object:
        a = self.numeric(x, node.pos, f"an operand of '{op}'")
        b = self.numeric(y, node.pos, f"an operand of '{op}'")
        if op == "*":
            if a.size == 1 or b.size == 1:
                return self.elementwise(np.multiply, x, y, node, op)
            if a.ndim != 2 or b.ndim != 2:
                raise _error(f"'*' needs 2-D matrices, got {_shape_str(a.shape)} and "
                             f"{_shape_str(b.shape)}; use .* to multiply elementwise", node.pos)
            if a.shape[1] != b.shape[0]:
                raise _error(f"inner matrix dimensions do not agree for '*': "
                             f"{_shape_str(a.shape)} and {_shape_str(b.shape)}; use .* to "
                             f"multiply elementwise", node.pos)
            self.check_count(a.shape[0] * b.shape[1], node)
            work = a.shape[0] * a.shape[1] * b.shape[1]
            if work > self.max_elements * 100:
                raise _error(f"{self.text_of(node)} would need {_fmt_count(work)} "
                             f"multiply-adds; that is too much work", node.pos)
            a2, b2 = _unify(a, b)
            return a2 @ b2
        if op == "/":
            if b.size == 1:
                return self.elementwise(np.divide, x, y, node, op)
            raise _error(f"'/' with a {_shape_str(b.shape)} divisor is matrix division, which "
                         f"is not supported; use ./ to divide elementwise", node.pos)
        if op == "\\":
            if a.size == 1:
                return self.elementwise(lambda p, q: np.divide(q, p), x, y, node, op)
            raise _error(f"'\\' with a {_shape_str(a.shape)} left side is matrix division, "
                         f"which is not supported; use .\\ or ./ instead", node.pos)
        if op == "^":
            if a.size == 1 and b.size == 1:
                return self.elementwise(np.power, x, y, node, op)
            if b.size == 1 and a.ndim == 2 and a.shape[0] == a.shape[1]:
                p = float(b.item())
                if p != math.floor(p) or not math.isfinite(p):
                    raise _error("a matrix power needs an integer exponent; use .^ for an "
                                 "elementwise power", node.pos)
                n = a.shape[0]
                work = n ** 3 * max(1, int(abs(p)).bit_length())
                if work > self.max_elements * 100:
                    raise _error(f"{self.text_of(node)} would need {_fmt_count(work)} "
                                 f"multiply-adds; that is too much work", node.pos)
                a2 = _to_float(a)
                return np.linalg.matrix_power(a2, int(p))
            raise _error(f"'^' needs a square matrix and a single exponent, got "
                         f"{_shape_str(a.shape)} and {_shape_str(b.shape)}; use .^ for an "
                         f"elementwise power", node.pos)
        raise _error(f"unknown operator '{op}'", node.pos)

    def _unary(self, node: Unary) -> object:
        v = self.eval(node.operand)
        a = self.numeric(v, node.pos, f"the operand of '{node.op}'")
        scalar = a.ndim == 0
        with np.errstate(all="ignore"):
            if node.op == "~":
                r = a == 0
            elif node.op == "-":
                r = -_to_float(a)
            else:
                r = _to_float(a)
        return _result(r, scalar)

    def _transpose(self, node: Transpose) -> object:
        v = self.eval(node.operand)
        if isinstance(v, str) and len(v) <= 1:
            return v
        a = self.numeric(v, node.pos, "the operand of a transpose")
        if a.ndim == 0:
            return v
        if a.ndim > 2:
            raise _error(f"transpose is not defined for N-D arrays ({_shape_str(a.shape)})",
                         node.pos)
        return a.T

    def _range(self, node: Range) -> object:
        parts = [node.start, node.step, node.stop] if node.step is not None else [
            node.start, node.stop]
        values = []
        single = False
        for p in parts:
            a = self.numeric(self.eval(p), _start_pos(p), "a range bound")
            if a.size == 0:
                return np.zeros((1, 0))
            single = single or a.dtype == np.float32
            values.append(float(a.reshape(-1)[0]))
        start, stop = values[0], values[-1]
        step = values[1] if len(values) == 3 else 1.0
        if any(math.isnan(v) for v in values):
            raise _error("range bounds must not be NaN", node.pos)
        dtype = np.float32 if single else np.float64
        if step == 0 or (stop - start) / step < 0:
            return np.zeros((1, 0), dtype=dtype)
        q = (stop - start) / step
        if not math.isfinite(q):
            raise _error(f"{self.text_of(node)} would have Inf elements; the limit is "
                         f"{_fmt_count(self.max_elements)}", node.pos)
        tol = 4 * np.finfo(np.float64).eps * max(abs(start), abs(stop)) / abs(step)
        count = int(math.floor(q + tol + 1e-10)) + 1
        self.check_count(count, node)
        out = start + step * np.arange(count, dtype=np.float64)
        if count and abs(out[-1] - stop) <= tol * abs(step):
            out[-1] = stop
        return out.astype(dtype).reshape(1, count)

    # -- literals -----------------------------------------------------------------------

    def concat(self, values: Sequence[object], dim: int, node: Node,
               positions: Sequence[Pos]) -> object:
        """Matlab concatenation along ``dim`` (1-based) of strings, cells or arrays."""
        if not values:
            return np.zeros((0, 0))
        if any(isinstance(v, list) for v in values):
            out: list[object] = []
            for v, p in zip(values, positions, strict=False):
                if isinstance(v, list):
                    out.extend(v)
                elif isinstance(v, np.ndarray) and v.size == 0:
                    continue
                else:
                    raise _error(f"cannot concatenate {_type_name(v)} with a cell array", p)
            if dim != 2 and len(values) > 1:
                raise _error("only horizontal concatenation of cells is supported", node.pos)
            return out
        if any(isinstance(v, str) for v in values):
            if not all(isinstance(v, str) for v in values):
                bad = next(p for v, p in zip(values, positions, strict=False)
                           if not isinstance(v, str))
                raise _error("cannot concatenate a string with numbers", bad)
            if dim != 2 and len(values) > 1:
                raise _error("multi-row character arrays are not supported", node.pos)
            return "".join(values)  # type: ignore[arg-type]
        arrays = []
        for v, p in zip(values, positions, strict=False):
            a = _as_matrix(self.numeric(v, p, "an element of a concatenation"))
            if a.size:
                arrays.append(a)
        if not arrays:
            first = values[0]
            return first if isinstance(first, np.ndarray) else np.zeros((0, 0))
        self.check_count(sum(a.size for a in arrays), node)
        nd = max(dim, *(a.ndim for a in arrays))
        arrays = [a.reshape(a.shape + (1,) * (nd - a.ndim)) for a in arrays]
        if any(a.dtype == np.float32 for a in arrays):
            arrays = [a.astype(np.float32) for a in arrays]
        for a in arrays[1:]:
            sa, sb = list(arrays[0].shape), list(a.shape)
            sa[dim - 1] = sb[dim - 1] = 0
            if sa != sb:
                raise _error(f"dimensions of arrays being concatenated are not consistent: "
                             f"{_shape_str(arrays[0].shape)} and {_shape_str(a.shape)}",
                             node.pos)
        return np.concatenate(arrays, axis=dim - 1)

    def _matrix(self, node: Matrix) -> object:
        rows = self._rows(node.rows)
        flat = [v for row in rows for v in row]
        if not flat:
            return np.zeros((0, 0))
        if len(flat) == 1:
            return flat[0]
        try:
            joined = [self.concat(row, 2, node, [_start_pos(e) for e in row_nodes])
                      for row, row_nodes in zip(rows, node.rows, strict=True)]
            if len(joined) == 1:
                return joined[0]
            return self.concat(joined, 1, node, [_start_pos(r[0]) for r in node.rows])
        except SpecError:
            raise
        except Exception as exc:
            raise self._wrap(exc, node, "concatenation") from None

    def _rows(self, rows: Sequence[Sequence[Node]]) -> list[list[object]]:
        """The elements of a matrix or cell, evaluated as held values (:meth:`eval_held`)."""
        values = iter(self.eval_held([e for row in rows for e in row]))
        return [[next(values) for _ in row] for row in rows]

    def _cell(self, node: Cell) -> object:
        rows = self._rows(node.rows)
        if not rows:
            return []
        if len(rows) == 1:
            return rows[0]
        if all(len(r) == 1 for r in rows):
            return [r[0] for r in rows]
        if len({len(r) for r in rows}) != 1:
            raise _error("the rows of a cell array must have the same number of elements",
                         node.pos)
        return rows


def evaluate(node_or_text: Node | str, *, names: Mapping[str, object] | None = None,
             rng: np.random.Generator | None = None,
             defines: Mapping[str, object] | None = None,
             max_elements: int = DEFAULT_MAX_ELEMENTS, source: str | None = None,
             line: int = 1, column: int = 1) -> object:
    """Evaluate a Matlab expression (text, parsed with ``line``/``column``, or a node).

    ``names`` binds variables (numbers, NumPy arrays, strings, lists as cells, nested dicts as
    structs for ``a.b.c``). ``rng`` supplies ``rand``/``randn`` draws. ``defines`` maps
    expression texts to values: any sub-expression whose :func:`source_text` equals a key
    (compared via :func:`normalize_define_key`) takes that value without being evaluated, so
    ``{'size(imdb.images.data,1)': 320}`` or ``{'f': 0.01}`` work. ``source`` is the text quoted
    in error messages (default: the expression). See the module docstring for the values
    returned."""
    if isinstance(node_or_text, str):
        root = parse(node_or_text, line=line, column=column)
        text = source if source is not None else node_or_text
    elif isinstance(node_or_text, Node):
        root = node_or_text
        _check_depth(root)
        text = source if source is not None else _Printer().text(root)
    else:
        raise TypeError(f"evaluate() needs a string or a Node, got {type(node_or_text)}")
    ev = _Evaluator(root, names, rng, defines, max_elements, text)
    try:
        return ev.eval(root)
    except SpecError:
        raise
    except RecursionError:
        raise _error("expression is nested too deeply to evaluate", root.pos) from None
    except Exception as exc:
        raise _error(f"cannot evaluate '{ev.source}': {exc}", root.pos) from None
