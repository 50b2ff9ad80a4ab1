"""Matlab source (``.m``) -> spec: a statement translator on top of :mod:`layerspec.expr`.

Nothing in the file is ever run. The file is tokenized and parsed with expr's tokenizer and
:class:`~layerspec.expr.Parser`; each statement is then *translated*:

* ``net.layers = { struct(...) struct(...) ... }`` (the seed article's form; entries separated
  by whitespace, newlines or commas), ``net.layers = {}``, ``net.layers{end+1} = struct(...)``,
  ``net.layers{k} = struct(...)``, ``net.layers{k}.field = value``; ``struct(name, value, ...)``
  with ``{{...}}`` cell values; a struct kept in a variable (``l = struct(...)``) and added
  later.
* layer weights stay *initializer expressions*, written in canonical form
  (:func:`~layerspec.expr.source_text`, e.g. ``f*randn(5,5,1,20,'single')``), so the spec
  reads like the ``.m`` file; every other field is evaluated to a number, list or text.
* variables (``f = 1/100``) used by initializers are kept in the spec's ``vars:`` (as written,
  when assigned once) or substituted by their value (when reassigned); elsewhere they are
  substituted.
* ``net.meta.inputSize`` / ``net.meta.normalization.imageSize`` -> ``input``;
  ``net.meta.trainOpts.*`` -> ``train:`` (cnn_train's option names; others are dropped with a
  note); ``net.meta.classes.name`` -> ``meta: classes``; other ``net.meta`` fields -> ``meta``.
* ``rng(k)``, ``rng('default')``, ``randn('state', k)``, ``rand('seed', k)`` -> the spec's
  ``seed`` (with a note: layerspec's generator is not Matlab's, so the draws differ).
* ``function net = name(varargin)`` wrappers are accepted (a closing ``end`` too); assignments
  to ``opts``/``opts.*`` and ``vl_argparse`` are ignored with a note; local functions after the
  main one are ignored with a note; ``vl_setupnn``, ``vl_simplenn_display(net)`` and
  ``net = vl_simplenn_tidy(net)`` are ignored (layerspec tidies every spec).
* names that are neither variables nor spec functions (the seed's
  ``size(imdb.images.data,1)``) are an error naming them, unless ``defines`` binds the name or
  the exact expression; the defines used are written into the spec's ``defines:``.
* loops, ``if``/``switch``/``try``, calls of other functions: an error naming the statement
  with its ``line:col`` (or, with ``skip_unsupported``, skipped with a warning each); ``eval``,
  ``feval``, ``evalin``, ``system``, ``unix``, ``load``, ``!`` ... are always an error.

The dropout field ``fraction`` (the seed article's name) is kept as written: the spec reader
accepts it as an alias of ``rate``. Initializers that mix double (``randn(...)``) and single
(``zeros(..., 'single')``) arrays, which MatConvNet itself rejects, give a note: layerspec
stores every weight as float32.

Errors are :class:`~layerspec.errors.MatlabSourceError` reading ``file.m:line:col: error: ...``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MatlabSourceError, SpecError
from .expr import (
    FORBIDDEN,
    FUNCTIONS,
    Call,
    Cell,
    End,
    Field,
    Matrix,
    Name,
    Node,
    Number,
    Parser,
    String,
    Token,
    dotted_name,
    evaluate,
    iter_nodes,
    normalize_define_key,
    source_text,
    tokenize,
)
from .spec import TRAIN_DEFAULTS, tidy

__all__ = ["PortedM", "port_m", "translate_m"]

#: statements that start a block layerspec cannot translate
_BLOCK_KEYWORDS = frozenset({"for", "parfor", "while", "if", "switch", "try", "spmd"})
_OTHER_KEYWORDS = frozenset({"else", "elseif", "case", "otherwise", "catch", "break",
                             "continue", "return", "global", "persistent", "classdef"})
#: calls that are harmless and ignored (with a note)
_IGNORED_CALLS = frozenset({"vl_setupnn", "vl_simplenn_display", "clc", "clear", "close",
                            "disp", "fprintf", "tic", "toc", "format", "warning"})
_NEVER_RUN = FORBIDDEN - {"clear", "fprintf", "vl_setupnn"}
_SEED_FUNCS = frozenset({"rng", "randn", "rand"})
_WEIGHT_FIELDS = ("weights", "filters", "biases")


@dataclasses.dataclass
class PortedM:
    """The result of translating a ``.m`` file."""

    raw: dict[str, Any]                     #: the spec as plain data (before tidy)
    layer_pos: list[tuple[int, int]]        #: the source position of each layer
    key_pos: list[dict[str, tuple[int, int]]]  #: ... and of each of its fields
    notes: list[str]                        #: what was ignored or interpreted
    warnings: list[str]                     #: statements skipped (``skip_unsupported``)
    source: str                             #: the file name, for comments
    #: where each net.meta field was set (``"inputSize"``, ``"trainOpts.learningRate"``)
    meta_pos: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Layer:
    fields: dict[str, Any]
    pos: tuple[int, int]
    keypos: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Var:
    node: Node
    value: Any
    count: int = 1


@dataclasses.dataclass
class _Init:
    """An initializer expression and the values of the variables it used, when written."""

    node: Node
    snapshot: dict[str, Any]


class _Stop(Exception):
    """End of the main function."""


def _plain(v: Any) -> Any:
    """An evaluated Matlab value as plain YAML data."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | float | np.number):
        f = float(v)
        return int(f) if math.isfinite(f) and f == int(f) and abs(f) < 2**53 else f
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            raise ValueError("not numeric")
        if v.size == 1:
            return _plain(v.reshape(()).item())
        if sum(d > 1 for d in v.shape) <= 1:
            return [_plain(x) for x in v.reshape(-1, order="F")]
        raise ValueError(f"a {'x'.join(map(str, v.shape))} array")
    if isinstance(v, list):
        flat = [e for row in v for e in row] if v and all(isinstance(r, list) for r in v) else v
        return [_plain(e) for e in flat]
    if isinstance(v, dict):
        return {k: _plain(e) for k, e in v.items()}
    raise ValueError(type(v).__name__)


def _replace_names(node: Node, mapping: Mapping[str, Node]) -> Node:
    """A copy of ``node`` with the ``Name`` nodes in ``mapping`` (and ``end``) replaced."""
    if isinstance(node, Name) and node.name in mapping:
        return mapping[node.name]
    if isinstance(node, End) and "end" in mapping:
        return mapping["end"]
    if not dataclasses.is_dataclass(node):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, Node):
            nv = _replace_names(v, mapping)
        elif isinstance(v, tuple) and v and isinstance(v[0], tuple):
            nv = tuple(tuple(_replace_names(e, mapping) for e in row) for row in v)
        elif isinstance(v, tuple) and v and isinstance(v[0], Node):
            nv = tuple(_replace_names(e, mapping) for e in v)
        else:
            continue
        if nv is not v:
            changes[f.name] = nv
    return dataclasses.replace(node, **changes) if changes else node


def _number_node(value: float, pos: Any) -> Node:
    return Number(float(value), None, pos)


def _path(node: Node) -> tuple[str, list[tuple[str, Any]]] | None:
    """``net.layers{end+1}.name`` -> ``('net', [('field','layers'), ('brace',args), ...])``."""
    parts: list[tuple[str, Any]] = []
    while True:
        if isinstance(node, Field):
            parts.append(("field", node.name))
            node = node.target
        elif isinstance(node, Call):
            parts.append(("brace" if node.braces else "paren", node.args))
            node = node.target
        elif isinstance(node, Name):
            return node.name, list(reversed(parts))
        else:
            return None


class _Translator:
    def __init__(self, text: str, file: str, defines: Mapping[str, Any] | None,
                 skip_unsupported: bool) -> None:
        self.text = text
        self.file = file
        self.label = Path(file).name
        self.defines = {normalize_define_key(k): v for k, v in (defines or {}).items()}
        self.used_defines: set[str] = set()
        self.skip = skip_unsupported
        self.vars: dict[str, _Var] = {}
        self.var_order: list[str] = []
        self.layers: list[_Layer] | None = None
        self.meta: dict[str, Any] = {}
        self.input: list[int] | None = None
        self.train: dict[str, Any] = {}
        self.seed: int | None = None
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.function: str | None = None
        self._noted: set[str] = set()
        self.meta_pos: dict[str, Node] = {}
        self.stmt_pos: Any = None

    # ----- helpers --------------------------------------------------------------------
    def error(self, message: str, pos: Any) -> MatlabSourceError:
        line, col = (pos.line, pos.column) if pos is not None else (None, None)
        return MatlabSourceError(message, file=self.file, line=line, column=col)

    def from_expr(self, err: SpecError) -> MatlabSourceError:
        return MatlabSourceError(err.message, file=self.file, line=err.line, column=err.column)

    def note(self, key: str, message: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(message)

    def where(self, pos: Any) -> str:
        return f"{self.label}:{pos.line}:{pos.column}"

    def names(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v.value for k, v in self.vars.items()
                               if not isinstance(v.value, _Layer)}
        out["net"] = {"meta": self.meta}
        return out

    def check_forbidden(self, node: Node) -> None:
        for n in iter_nodes(node):
            name = None
            if isinstance(n, Call) and isinstance(n.target, Name):
                name = n.target.name
            elif isinstance(n, Name):
                name = n.name
            if name in _NEVER_RUN:
                err = self.error(f"'{name}' is never run: layerspec does not execute Matlab "
                                 f"code; write the values it would produce instead", n.pos)
                err.always = True  # type: ignore[attr-defined]
                raise err

    def unknown_names(self, node: Node) -> None:
        """Raise naming the first name that is neither a variable, a spec function nor
        bound by ``defines`` (with the enclosing ``size(...)``-like call to define)."""
        def visit(n: Node, parent: Node | None) -> None:
            key = source_text(n)
            if key in self.defines:
                self.used_defines.add(key)
                return
            if isinstance(n, Name | Field):
                full = dotted_name(n)
                root = full.split(".")[0] if full else None
                if root in self.vars or (isinstance(n, Name) and n.name in FUNCTIONS):
                    return
                if root == "net" and full and full.startswith("net.meta"):
                    return
                target = n
                if isinstance(n, Field) and isinstance(parent, Call) \
                        and isinstance(parent.target, Name) \
                        and parent.target.name in ("size", "numel", "length", "ndims"):
                    target = parent  # the seed's size(imdb.images.data,1)
                what = source_text(target)
                raise self.error(f"unknown name '{full or key}' in '{what}': bind it with "
                                 f"--define '{what}=VALUE' (or assign it before use)",
                                 n.pos)
            if isinstance(n, Call) and not n.braces:
                tname = n.target.name if isinstance(n.target, Name) else None
                if tname is not None and tname not in FUNCTIONS and tname not in self.vars:
                    raise self.error(f"unknown function '{tname}' in '{key}': bind the "
                                     f"expression with --define '{key}=VALUE'", n.pos)
                for a in n.args:
                    visit(a, n)
                return
            for c in _children(n):
                visit(c, n)

        visit(node, None)

    def evaluate(self, node: Node, what: str) -> Any:
        self.check_forbidden(node)
        try:
            self.unknown_names(node)
            return evaluate(node, names=self.names(), defines=self.defines,
                            rng=np.random.default_rng(0), max_elements=10_000_000)
        except MatlabSourceError:
            raise
        except SpecError as err:
            raise self.from_expr(err) from None

    def plain(self, value: Any, what: str, pos: Any) -> Any:
        try:
            return _plain(value)
        except ValueError as exc:
            raise self.error(f"{what}: cannot be written in a spec ({exc})", pos) from None

    # ----- values ---------------------------------------------------------------------
    def struct(self, node: Call) -> _Layer:
        args = node.args
        if len(args) % 2:
            raise self.error("struct(...) needs name/value pairs", node.pos)
        fields: dict[str, Any] = {}
        keypos: dict[str, tuple[int, int]] = {}
        for k in range(0, len(args), 2):
            key, val = args[k], args[k + 1]
            if not isinstance(key, String):
                raise self.error("struct(...): field names must be quoted texts such as "
                                 "'type'", key.pos)
            name = key.value
            if name in fields:
                raise self.error(f"struct(...): field '{name}' is given twice (Matlab refuses "
                                 f"a duplicate field name)", key.pos)
            if isinstance(val, Cell):
                elems = [e for row in val.rows for e in row]
                if len(elems) > 1:
                    raise self.error(f"struct(...): field '{name}' is a cell of "
                                     f"{len(elems)} values, which makes a struct array; "
                                     f"wrap it in double braces {{{{...}}}} for one cell "
                                     f"value", val.pos)
                if not elems:
                    raise self.error(f"struct(...): field '{name}' is {{}}, which makes an "
                                     f"empty struct array; write {{{{}}}} for an empty cell",
                                     val.pos)
                val = elems[0]
            fields[name] = self.field_value(name, val)
            keypos[name] = (key.pos.line, key.pos.column)
        return _Layer(fields, (node.pos.line, node.pos.column), keypos)

    def field_value(self, name: str, node: Node) -> Any:
        self.check_forbidden(node)
        if name == "weights":
            if isinstance(node, Cell):
                return [self.initializer(e) for row in node.rows for e in row]
            raise self.error("weights: expected a cell of initializers such as "
                             "{{f*randn(5,5,1,20,'single'), zeros(1,20,'single')}}", node.pos)
        if name in ("filters", "biases"):
            if isinstance(node, Matrix) and not node.rows:
                return "[]"
            return self.initializer(node)
        if isinstance(node, Call) and isinstance(node.target, Name) \
                and node.target.name == "struct":
            raise self.error(f"field '{name}': nested structs are not supported", node.pos)
        value = self.evaluate(node, name)
        return self.plain(value, f"field '{name}'", node.pos)

    def initializer(self, node: Node) -> _Init | str:
        self.check_forbidden(node)
        if isinstance(node, Matrix) and not node.rows:
            return "[]"
        self.unknown_names(node)
        snapshot = {n.name: self.vars[n.name].value for n in iter_nodes(node)
                    if isinstance(n, Name) and n.name in self.vars}
        return _Init(node, snapshot)

    def init_text(self, init: Any) -> Any:
        """An initializer's final text: variables assigned more than once (or whose value
        is not a number) are replaced by the value they had when the layer was written."""
        if not isinstance(init, _Init):
            return init
        mapping: dict[str, Node] = {}
        for name, value in init.snapshot.items():
            if self.vars[name].count > 1:
                if not isinstance(value, int | float | np.number):
                    raise self.error(f"variable '{name}' is reassigned and used in an "
                                     f"initializer with a non-scalar value; write its value "
                                     f"there instead", init.node.pos)
                mapping[name] = _number_node(float(value), init.node.pos)
        node = _replace_names(init.node, mapping) if mapping else init.node
        return source_text(node)

    def value(self, node: Node) -> Any:
        """The value of a right-hand side: a layer struct, a cell (list) of them, or an
        evaluated number/array/text."""
        if isinstance(node, Call) and not node.braces and isinstance(node.target, Name):
            if node.target.name == "struct":
                return self.struct(node)
        if isinstance(node, Name) and node.name in self.vars \
                and isinstance(self.vars[node.name].value, _Layer):
            v = self.vars[node.name].value
            return _Layer(dict(v.fields), v.pos, dict(v.keypos))
        if isinstance(node, Cell):
            elems = [e for row in node.rows for e in row]
            vals = [self.value(e) for e in elems]
            return vals
        return self.evaluate(node, "value")

    # ----- statements -----------------------------------------------------------------
    def run(self) -> None:
        try:
            tokens = tokenize(self.text)
        except SpecError as err:
            raise self.from_expr(err) from None
        p = Parser(tokens)
        try:
            while True:
                self.skip_separators(p)
                if p.at_end:
                    break
                start = p.index
                try:
                    self.statement(p)
                except _Stop:
                    break
                except SpecError as err:
                    err = err if isinstance(err, MatlabSourceError) else self.from_expr(err)
                    if not self.skip or getattr(err, "always", False) \
                            or "shell escapes" in err.message:
                        raise err from None
                    self.warnings.append(f"{err.position}: statement skipped: {err.message}")
                    p.index = start
                    self.skip_statement(p)
        except RecursionError:
            raise self.error("statement nested too deeply", p.pos) from None

    @staticmethod
    def skip_separators(p: Parser) -> None:
        while p.current.kind == "newline" or (p.current.kind == "punct"
                                              and p.current.text in ",;"):
            p.advance()

    def skip_statement(self, p: Parser) -> None:
        """Move past the statement at ``p`` (a whole block for if/for/...)."""
        depth = 0
        brackets = 0
        first = True
        while not p.at_end:
            tok = p.current
            if tok.kind == "punct" and tok.text in "([{":
                brackets += 1
            elif tok.kind == "punct" and tok.text in ")]}":
                brackets -= 1
            elif tok.kind == "name" and brackets == 0 and (first or _stmt_start(p)):
                if tok.text in _BLOCK_KEYWORDS:
                    depth += 1
                elif tok.text == "end" and depth > 0:
                    depth -= 1
                    if depth == 0:
                        p.advance()
                        return
            if depth == 0 and brackets <= 0 and (tok.kind == "newline" or (
                    tok.kind == "punct" and tok.text in ",;")):
                return
            first = False
            p.advance()

    def end_statement(self, p: Parser) -> None:
        tok = p.current
        if tok.kind in ("newline", "eof") or (tok.kind == "punct" and tok.text in ",;"):
            return
        raise self.error(f"unexpected '{tok.text}' (one statement per line, or separate "
                         f"statements with ';' or ',')", tok.pos)

    def statement(self, p: Parser) -> None:
        tok = p.current
        if tok.kind == "name" and tok.text == "function":
            self.function_line(p)
            return
        if tok.kind == "name" and tok.text == "end":
            if self.function is not None:
                p.advance()
                self.end_statement(p)
                self.note("function-end", f"{self.where(tok.pos)}: end of function "
                                          f"'{self.function}'")
                raise _Stop
            raise self.error("unexpected 'end'", tok.pos)
        if tok.kind == "name" and tok.text in _BLOCK_KEYWORDS:
            raise self.error(f"'{tok.text}' statements cannot be translated (layerspec never "
                             f"runs Matlab code): write the layers that it would produce, "
                             f"or pass --skip-unsupported to skip it", tok.pos)
        if tok.kind == "name" and tok.text in _OTHER_KEYWORDS:
            raise self.error(f"'{tok.text}' cannot be translated", tok.pos)
        if tok.kind == "punct" and tok.text == "[":
            raise self.error("assignments to several outputs ([a, b] = ...) cannot be "
                             "translated", tok.pos)
        if tok.kind == "name" and tok.text in _IGNORED_CALLS \
                and p.peek(1).kind == "name" and p.peek(1).space_before:
            # command syntax: clear all, close all, format long
            while not (p.current.kind in ("newline", "eof")
                       or (p.current.kind == "punct" and p.current.text in ",;")):
                p.advance()
            self.note(f"ignored-{tok.text}", f"{self.where(tok.pos)}: '{tok.text}' ignored")
            return
        self.stmt_pos = tok.pos
        lhs = p.parse_expression()
        if p.at("op", "="):
            eq = p.advance()
            rhs = p.parse_expression()
            self.end_statement(p)
            self.assignment(lhs, rhs, eq)
        else:
            self.end_statement(p)
            self.call_statement(lhs)

    def function_line(self, p: Parser) -> None:
        tok = p.advance()
        if self.function is not None or self.layers is not None or self.vars:
            self.note("local-functions", f"{self.where(tok.pos)}: local functions after the "
                                         f"main code are ignored (calls of them cannot be "
                                         f"translated)")
            raise _Stop
        # function [out =] name[(args)]
        toks: list[Token] = []
        while not (p.current.kind in ("newline", "eof")
                   or (p.current.kind == "punct" and p.current.text in ",;")):
            toks.append(p.advance())
        names = [t.text for t in toks if t.kind == "name"]
        has_eq = any(t.kind == "op" and t.text == "=" for t in toks)
        if has_eq:
            idx = next(i for i, t in enumerate(toks) if t.kind == "op" and t.text == "=")
            after = [t.text for t in toks[idx + 1:] if t.kind == "name"]
            self.function = after[0] if after else "?"
        else:
            self.function = names[0] if names else "?"
        self.note("function", f"{self.where(tok.pos)}: function '{self.function}': its body "
                              f"is translated, its arguments are not used")

    def call_statement(self, node: Node) -> None:
        self.check_forbidden(node)
        fname = node.target.name if isinstance(node, Call) and isinstance(node.target, Name) \
            else (node.name if isinstance(node, Name) else None)
        if fname in _SEED_FUNCS and isinstance(node, Call):
            self.seed_call(node)
            return
        if fname in _IGNORED_CALLS:
            self.note(f"ignored-{fname}", f"{self.where(node.pos)}: '{fname}' ignored")
            return
        if fname == "vl_argparse":
            self.note("opts", f"{self.where(node.pos)}: option parsing (opts, vl_argparse) "
                              f"ignored")
            return
        what = source_text(node)
        if len(what) > 60:
            what = what[:57] + "..."
        raise self.error(f"cannot translate the statement '{what}': calls of other functions "
                         f"are not run (only assignments that build net.layers and "
                         f"net.meta, and rng seeds, are translated)", node.pos)

    def seed_call(self, node: Call) -> None:
        fname = node.target.name  # type: ignore[union-attr]
        args = node.args
        seed: int | None = None
        if fname == "rng":
            if not args:
                raise self.error("rng() without arguments cannot be translated", node.pos)
            first = args[0]
            if isinstance(first, String):
                if first.value not in ("default", "shuffle"):
                    raise self.error(f"rng('{first.value}') cannot be translated", first.pos)
                if first.value == "shuffle":
                    raise self.error("rng('shuffle') seeds from the clock; give a number",
                                     first.pos)
                seed = 0
            else:
                seed = self.seed_value(first)
        else:
            if len(args) != 2 or not isinstance(args[0], String) \
                    or args[0].value not in ("state", "seed", "twister"):
                raise self.error(f"cannot translate the call {source_text(node)}: only "
                                 f"{fname}('state', k) sets a seed", node.pos)
            seed = self.seed_value(args[1])
        self.seed = seed
        self.note(f"seed-{node.pos}", f"{self.where(node.pos)}: {source_text(node)} recorded as "
                                      f"the spec's seed {seed} (layerspec's generator is not "
                                      f"Matlab's: initial weights differ from Matlab's draws)")

    def seed_value(self, node: Node) -> int:
        v = self.evaluate(node, "seed")
        try:
            f = float(np.asarray(v).reshape(()))
        except (TypeError, ValueError):
            raise self.error("the seed must be a whole number", node.pos) from None
        if not math.isfinite(f) or f != int(f) or not 0 <= f < 2**32:
            raise self.error("the seed must be a whole number >= 0 and < 2^32 (as Matlab's "
                             "rng requires)", node.pos)
        return int(f)

    def assignment(self, lhs: Node, rhs: Node, eq: Token) -> None:
        path = _path(lhs)
        if path is None:
            raise self.error("cannot translate this assignment target", self.stmt_pos)
        root, parts = path
        if root == "opts":
            self.note("opts", f"{self.where(self.stmt_pos)}: option parsing (opts, vl_argparse) "
                              f"ignored")
            return
        self.check_forbidden(rhs)
        if root == "net":
            self.net_assignment(lhs, parts, rhs)
            return
        if not parts:
            value = self.value(rhs)
            if isinstance(value, list) and value and any(isinstance(v, _Layer) for v in value):
                raise self.error("a cell of layers in a variable cannot be translated; "
                                 "assign it to net.layers directly", rhs.pos)
            if root in self.vars:
                self.vars[root].count += 1
                self.vars[root].node, self.vars[root].value = rhs, value
            else:
                self.vars[root] = _Var(rhs, value)
                self.var_order.append(root)
            return
        var = self.vars.get(root)
        if var is not None and isinstance(var.value, _Layer) and len(parts) == 1 \
                and parts[0][0] == "field":
            var.value.fields[parts[0][1]] = self.layer_field_value(parts[0][1], rhs)
            var.value.keypos[parts[0][1]] = (self.stmt_pos.line, self.stmt_pos.column)
            return
        raise self.error(f"cannot translate the assignment to '{source_text(lhs)}'", self.stmt_pos)

    def layer_field_value(self, name: str, rhs: Node) -> Any:
        if name == "weights":
            if isinstance(rhs, Cell):
                return [self.initializer(e) for row in rhs.rows for e in row]
            raise self.error("weights: expected a cell {filters, biases} of initializers",
                             rhs.pos)
        return self.field_value(name, rhs)

    def layer_index(self, args: tuple[Node, ...], pos: Any) -> int:
        if len(args) != 1:
            raise self.error("net.layers takes one index", pos)
        n = len(self.layers or [])
        node = _replace_names(args[0], {"end": _number_node(n, pos)})
        v = self.evaluate(node, "index")
        try:
            f = float(np.asarray(v).reshape(()))
        except (TypeError, ValueError):
            raise self.error("the layer index must be a number", args[0].pos) from None
        if f != int(f) or f < 1:
            raise self.error(f"the layer index must be a whole number >= 1, got {f:g}",
                             args[0].pos)
        k = int(f)
        if k > n + 1:
            raise self.error(f"net.layers{{{k}}}: there are {n} layers so far; layers must "
                             f"be added in order", args[0].pos)
        return k - 1

    def net_assignment(self, lhs: Node, parts: list[tuple[str, Any]], rhs: Node) -> None:
        if not parts:
            if isinstance(rhs, Call) and isinstance(rhs.target, Name) \
                    and rhs.target.name == "vl_simplenn_tidy":
                self.note("tidy", f"{self.where(rhs.pos)}: vl_simplenn_tidy ignored (layerspec "
                                  f"tidies every spec)")
                return
            if isinstance(rhs, Call) and isinstance(rhs.target, Name) \
                    and rhs.target.name == "struct" and not rhs.args:
                return
            if isinstance(rhs, Matrix) and not rhs.rows:
                return
            raise self.error(f"cannot translate 'net = {source_text(rhs)[:50]}': calls of other "
                             f"functions are not run", self.stmt_pos)
        kind, name = parts[0]
        if kind != "field":
            raise self.error("cannot translate an indexed 'net'", self.stmt_pos)
        if name == "layers":
            self.layers_assignment(lhs, parts[1:], rhs)
        elif name in ("meta", "normalization", "classes"):
            sub = parts[1:] if name == "meta" else parts
            self.meta_assignment(lhs, sub, rhs)
        else:
            raise self.error(f"net.{name}: not a SimpleNN field (net.layers and net.meta are "
                             f"translated)", self.stmt_pos)

    def layers_assignment(self, lhs: Node, parts: list[tuple[str, Any]], rhs: Node) -> None:
        if not parts:
            if isinstance(rhs, Cell) or (isinstance(rhs, Matrix) and not rhs.rows):
                elems = [e for row in rhs.rows for e in row]
                layers = []
                for e in elems:
                    v = self.value(e)
                    if not isinstance(v, _Layer):
                        raise self.error("net.layers: every entry must be a struct(...)",
                                         e.pos)
                    layers.append(v)
                self.layers = layers
                return
            raise self.error("net.layers: expected a cell {struct(...), ...}", rhs.pos)
        kind, args = parts[0]
        if kind == "field":
            raise self.error("net.layers is a cell: index it with {k}", self.stmt_pos)
        if self.layers is None:
            self.layers = []
        k = self.layer_index(args, self.stmt_pos)
        if len(parts) == 1:
            if kind == "brace":
                v = self.value(rhs)
            else:  # net.layers(k) = {struct(...)}
                v = self.value(rhs)
                v = v[0] if isinstance(v, list) and len(v) == 1 else v
            if not isinstance(v, _Layer):
                raise self.error("a layer must be a struct(...)", rhs.pos)
            if k == len(self.layers):
                self.layers.append(v)
            else:
                self.layers[k] = v
            return
        if len(parts) == 2 and parts[1][0] == "field" and kind == "brace":
            if k >= len(self.layers):
                raise self.error(f"net.layers{{{k + 1}}} does not exist yet", self.stmt_pos)
            self.layers[k].fields[parts[1][1]] = self.layer_field_value(parts[1][1], rhs)
            self.layers[k].keypos[parts[1][1]] = (self.stmt_pos.line, self.stmt_pos.column)
            return
        raise self.error(f"cannot translate the assignment to '{source_text(lhs)}'", self.stmt_pos)

    def meta_assignment(self, lhs: Node, parts: list[tuple[str, Any]], rhs: Node) -> None:
        keys = []
        for kind, name in parts:
            if kind != "field":
                raise self.error(f"cannot translate the assignment to '{source_text(lhs)}'",
                                 self.stmt_pos)
            keys.append(name)
        value = self.evaluate(rhs, "meta")
        if not keys:
            if not isinstance(value, dict):
                raise self.error("net.meta must be a struct", rhs.pos)
            self.meta = {}
            for k, v in value.items():
                self.meta_set([k], v, rhs)
            return
        self.meta_set(keys, value, rhs)

    def meta_set(self, keys: list[str], value: Any, rhs: Node) -> None:
        d = self.meta
        for k in keys[:-1]:
            if not isinstance(d.get(k), dict):
                d[k] = {}
            d = d[k]
        if isinstance(value, dict):
            d[keys[-1]] = {}
            for k, v in value.items():
                self.meta_set([*keys, k], v, rhs)
            return
        d[keys[-1]] = value
        self.meta_pos[".".join(keys)] = rhs

    # ----- result ---------------------------------------------------------------------
    def result(self, name: str) -> PortedM:
        if not self.layers:
            raise MatlabSourceError("no layers found: expected net.layers = {struct(...), ...} "
                                    "or net.layers{end+1} = struct(...)", file=self.file,
                                    line=1, column=1)
        raw: dict[str, Any] = {"name": name}
        meta = dict(self.meta)
        size = meta.pop("inputSize", None)
        norm = meta.get("normalization")
        if size is None and isinstance(norm, dict):
            size = norm.get("imageSize")
        if size is not None:
            vals = _plain(size)
            vals = vals if isinstance(vals, list) else [vals]
            if len(vals) >= 3:
                raw["input"] = [int(v) for v in vals[:3]]
            else:
                self.notes.append(f"input size {vals} has no channel count; give 'input: "
                                  f"[H, W, C]' in the spec or check with --input")
        # initializers -> text; the variables they use (kept when assigned once)
        wanted: set[str] = set()
        layers = []
        mixed = []
        for i, layer in enumerate(self.layers):
            d = dict(layer.fields)
            for k in _WEIGHT_FIELDS:
                v = d.get(k)
                for init in v if isinstance(v, list) else [v]:
                    if isinstance(init, _Init):
                        wanted |= {n for n in init.snapshot if self.vars[n].count == 1}
                if isinstance(v, list):
                    d[k] = [self.init_text(e) for e in v]
                elif v is not None:
                    d[k] = self.init_text(v)
            layers.append(d)
            inits = d.get("weights") if isinstance(d.get("weights"), list) else \
                [d[k] for k in ("filters", "biases") if isinstance(d.get(k), str)]
            kinds = {_precision(e) for e in inits if e != "[]"} - {None}
            if len(kinds) > 1:
                mixed.append(str(i + 1))
        if mixed:
            self.notes.append(f"layer(s) {', '.join(mixed)} mix double and single "
                              f"initializers (MatConvNet rejects the mix); layerspec stores "
                              f"every weight as float32")
        vars_out: dict[str, Any] = {}
        todo = list(wanted)
        while todo:
            name = todo.pop()
            deps = {n.name for n in iter_nodes(self.vars[name].node)
                    if isinstance(n, Name) and n.name in self.vars and n.name != name}
            if any(self.vars[d].count > 1 for d in deps):
                vars_out[name] = self.plain(self.vars[name].value, name, None)
                continue
            vars_out[name] = None
            todo.extend(d for d in deps if d not in vars_out and d not in wanted)
            wanted |= deps
        if vars_out:
            raw["vars"] = {}
            for name in self.var_order:
                if name not in vars_out:
                    continue
                node = self.vars[name].node
                v = vars_out[name]
                if v is None:
                    v = _plain(node.value) if isinstance(node, Number) else source_text(node)
                raw["vars"][name] = v
        if self.used_defines:
            raw["defines"] = {k: self.defines[k] for k in self.defines
                              if k in self.used_defines}
        raw["layers"] = layers
        classes = meta.pop("classes", None)
        train = meta.pop("trainOpts", None)
        if classes is not None:
            names = classes.get("name") if isinstance(classes, dict) else classes
            plain = self.plain(names, "net.meta.classes.name", None)
            meta["classes"] = plain if isinstance(plain, list) else [plain]
            if isinstance(classes, dict) and "description" in classes:
                meta["classDescriptions"] = _plain(classes["description"])
        if meta:
            out_meta = {}
            for k, v in meta.items():
                try:
                    out_meta[k] = _plain(v)
                except ValueError:
                    self.notes.append(f"net.meta.{k} is not simple data; left out")
            if out_meta:
                raw["meta"] = out_meta
        if isinstance(train, dict):
            out_train: dict[str, Any] = {}
            for k, v in train.items():
                if k not in TRAIN_DEFAULTS:
                    self.notes.append(f"net.meta.trainOpts.{k} is not a cnn_train option "
                                      f"layerspec uses; left out")
                    continue
                rhs = self.meta_pos.get(f"trainOpts.{k}")
                if k == "learningRate" and isinstance(v, np.ndarray) and v.size > 1 \
                        and rhs is not None:
                    out_train[k] = source_text(rhs)
                else:
                    out_train[k] = _plain(v)
            if out_train:
                raw["train"] = out_train
        if self.seed is not None:
            raw["seed"] = self.seed
        return PortedM(raw, [layer.pos for layer in self.layers],
                       [layer.keypos for layer in self.layers], self.notes, self.warnings,
                       self.label, {k: (n.pos.line, n.pos.column)
                                    for k, n in self.meta_pos.items()})


def _children(n: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of a node (generic over expr's node dataclasses)."""
    out: list[Node] = []
    for f in dataclasses.fields(n):  # type: ignore[arg-type]
        v = getattr(n, f.name)
        if isinstance(v, Node):
            out.append(v)
        elif isinstance(v, tuple):
            for e in v:
                if isinstance(e, Node):
                    out.append(e)
                elif isinstance(e, tuple):
                    out.extend(x for x in e if isinstance(x, Node))
    return tuple(out)


def _precision(expr: str) -> str | None:
    """'single' / 'double' for an initializer text (a heuristic on its constructors)."""
    if "'single'" in expr or "single(" in expr:
        return "single"
    if any(f"{fn}(" in expr for fn in ("randn", "rand", "zeros", "ones")):
        return "double"
    return None


def _stmt_start(p: Parser) -> bool:
    prev = p.tokens[p.index - 1] if p.index > 0 else None
    return prev is None or prev.kind == "newline" or (prev.kind == "punct"
                                                      and prev.text in ",;")


def translate_m(text: str, file: str = "<string>", *, defines: Mapping[str, Any] | None = None,
                skip_unsupported: bool = False, name: str | None = None) -> PortedM:
    """Translate Matlab source ``text`` into a raw spec (see the module docstring)."""
    tr = _Translator(text, file, defines, skip_unsupported)
    tr.run()
    ported = tr.result(name or Path(file).stem)
    for i, layer in enumerate(ported.raw["layers"]):
        try:
            tidy({"layers": [layer]}, file=file)
        except SpecError as err:
            line, col = ported.layer_pos[i]
            msg = err.message.removeprefix("layer 1: ")
            for key, kpos in ported.key_pos[i].items():
                if f"'{key}'" in msg or msg.startswith(f"{layer.get('type')}: {key}:") or (
                        key == "type" and "layer type" in msg):
                    line, col = kpos
                    break
            raise MatlabSourceError(f"layer {i + 1}: {msg}", file=file, line=line,
                                    column=col) from None
    try:
        tidy(ported.raw, file=file)
    except SpecError as err:
        raise MatlabSourceError(f"the translated spec is not valid: {err.message}",
                                file=file, **_meta_position(ported, err.message)) from None
    return ported


def _meta_position(ported: PortedM, message: str) -> dict[str, int]:
    """``line=``/``column=`` of the net.meta statement a tidy error of the translated spec
    names (``input: ...`` or ``train: learningRate: ...``); the file's start otherwise."""
    keys = {"input": ("inputSize", "normalization.imageSize")}
    head, _, rest = message.partition(": ")
    candidates = keys.get(head, ())
    if head == "train":
        candidates = (f"trainOpts.{rest.partition(':')[0].split()[-1].strip(chr(39))}",)
    for key in candidates:
        if key in ported.meta_pos:
            line, column = ported.meta_pos[key]
            return {"line": line, "column": column}
    return {"line": 1, "column": 1}


def read_m(path: str | Path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MatlabSourceError("no such file", file=str(path)) from None
    except OSError as exc:
        raise MatlabSourceError(f"cannot read the file: {exc.strerror or exc}",
                                file=str(path)) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise MatlabSourceError("the file is UTF-16 text; save it as UTF-8 (or Latin-1)",
                                file=str(path), line=1, column=1)
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise MatlabSourceError("cannot decode the file", file=str(path))  # pragma: no cover


# ----- YAML output ------------------------------------------------------------------------

def _scalar(v: Any) -> str:
    import yaml  # noqa: PLC0415

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        if math.isnan(v):
            return ".nan"
        r = repr(v)
        return r if ("." in r or "e" in r or "n" in r) else r + ".0"
    if isinstance(v, str):
        plain_ok = (v and v.strip() == v and all(c.isalnum() or c in "_-./ ()" for c in v)
                    and yaml.safe_load(v) == v)
        return v if plain_ok else json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    raise TypeError(type(v).__name__)


def _flow(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_flow(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(str(k))}: {_flow(e)}" for k, e in v.items()) + "}"
    return _scalar(v)


def to_yaml(ported: PortedM) -> str:
    """The ported spec as YAML, with a comment citing each layer's source position."""
    raw = ported.raw
    out = [f"# ported by `layerspec port` from {ported.source}; initializers are kept as "
           f"written there", "# (canonical form). Nothing in the source was run."]
    for n in ported.notes:
        out.append(f"# note: {n}")
    for key, v in raw.items():
        if key == "layers":
            out.append("layers:")
            for layer, (line, col) in zip(v, ported.layer_pos, strict=True):
                first = True
                for fk, fv in layer.items():
                    lead = "  - " if first else "    "
                    text = f"{lead}{_scalar(fk)}: {_flow(fv)}"
                    if first:
                        text = f"{text:<40}# {ported.source}:{line}:{col}"
                    out.append(text)
                    first = False
        elif isinstance(v, dict):
            out.append(f"{key}:")
            for k, e in v.items():
                out.append(f"  {_scalar(str(k))}: {_flow(e)}")
        else:
            out.append(f"{key}: {_flow(v)}")
    return "\n".join(out) + "\n"


def port_m(path: str | Path, *, defines: Mapping[str, Any] | None = None,
           skip_unsupported: bool = False, name: str | None = None) -> PortedM:
    """Read and translate the ``.m`` file at ``path``."""
    return translate_m(read_m(path), str(path), defines=defines,
                       skip_unsupported=skip_unsupported, name=name)

