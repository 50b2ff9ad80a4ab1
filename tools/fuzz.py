"""Property-based fuzzing of layerspec's input readers (hypothesis).

Targets (each input either loads or raises :class:`layerspec.SpecError`, within a time and a
memory bound; anything else -- another exception, a hang, a large allocation -- is a failure):

* ``yaml`` -- :func:`layerspec.load` on a spec file: generated spec-like YAML, mutated (tags,
  anchors and aliases, merge keys, ``.nan``, ``yes``, tabs, stray brackets, cut lines), plus raw
  text and raw bytes;
* ``dict`` -- :func:`layerspec.load` on generated spec-like mappings (every field of every layer
  type, with numbers, huge and negative sizes, NaN, booleans, texts, lists and mappings);
* ``expr`` -- :func:`layerspec.expr.evaluate` on generated Matlab expressions (every function,
  forbidden names, huge sizes, deep nesting) and raw text;
* ``mfile`` -- :func:`layerspec.mfile.translate_m` on generated ``.m`` sources (layer structs,
  meta, seeds, loops, eval/system/load, comments, continuations), mutated, plus raw text.

Usage::

    python tools/fuzz.py                      # 10,000 inputs per target
    python tools/fuzz.py -n 200 expr mfile    # a few targets, fewer inputs

Prints, per target: inputs tried, how many loaded and how many were refused, the slowest input
and the largest peak allocation; on a failure, hypothesis's minimal failing input. The test
suite (tests/test_fuzz.py) runs the same properties briefly.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layerspec
from layerspec.errors import SpecError
from layerspec.expr import FORBIDDEN, FUNCTIONS, evaluate
from layerspec.layers import LAYER_CLASSES
from layerspec.mfile import translate_m

#: seconds one input may take
TIME_LIMIT = 10.0
#: bytes one input may allocate at its peak (the evaluator allows 5e7-element arrays)
MEMORY_LIMIT = 2 * 1024**3

# --------------------------------------------------------------------------------------------
# strategies: pieces


SIZES = st.one_of(
    st.integers(0, 6),
    st.sampled_from([-1, -3, 8, 16, 10**9, 2**31, 2**63, 10**300]),
)
ODD_SCALARS = st.sampled_from([0.5, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, True,
                               False, None, "3", "yes", "", "max", "avg", "inverted"])
SCALARS = st.one_of(SIZES, SIZES, ODD_SCALARS, st.floats(), st.text(max_size=8))

NUMBER_TEXT = st.sampled_from(["0", "1", "2", "3", "4", "0.5", "1e9", "1e400", "-1", "2^31",
                               "1e-3", ".5", "5.", "0x10", "1i", "pi", "Inf", "NaN", "eps",
                               "end", "true"])
NAME_TEXT = st.sampled_from(["x", "f", "n", "scale", "imdb.images.data", "net.layers", "ans",
                             "varargin", "opts.lr"])
STRING_TEXT = st.sampled_from(["'single'", "'double'", "'like'", "''", "'a''b'", "\"dq\"",
                               "'unterminated"])
CALLABLE = st.sampled_from(sorted(set(FUNCTIONS) | FORBIDDEN | {"myfun", "vl_nnconv"}))
BINOPS = st.sampled_from(["+", "-", "*", "/", "\\", "^", ".*", "./", ".^", ":", "==", "~=",
                          "<", ">=", "&", "|", "&&", "||", " "])
EXPR_CHARS = "0123456789.eE+-*/\\^'\"()[]{},;: =<>~&|@!%abcdefnorsxyz_\n\t"


def _expr_tree() -> st.SearchStrategy[str]:
    leaves = st.one_of(NUMBER_TEXT, NAME_TEXT, STRING_TEXT,
                       st.builds(lambda f, a: f"{f}({a})", CALLABLE,
                                 st.lists(NUMBER_TEXT, max_size=4).map(",".join)))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        args = st.lists(st.one_of(inner, STRING_TEXT, st.just(":")), max_size=5)
        return st.one_of(
            st.builds(lambda a, op, b: f"{a}{op}{b}", inner, BINOPS, inner),
            st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["-", "+", "~", "!"]), inner),
            st.builds(lambda a, t: f"{a}{t}", inner, st.sampled_from(["'", ".'", "(1)",
                                                                     "{1}", ".f", "(end)"])),
            st.builds(lambda a: f"({a})", inner),
            st.builds(lambda f, a: f"{f}({','.join(a)})", CALLABLE, args),
            st.builds(lambda rows: "[" + ";".join(" ".join(r) for r in rows) + "]",
                      st.lists(st.lists(inner, max_size=3), max_size=3)),
            st.builds(lambda a: "{" + ", ".join(a) + "}", st.lists(inner, max_size=3)),
        )

    return st.recursive(leaves, extend, max_leaves=12)


EXPR_TREE = _expr_tree()
EXPRESSIONS = st.one_of(
    EXPR_TREE, EXPR_TREE,
    st.builds(lambda f, dims, cls: f"{f}({','.join(map(str, dims))}{cls})",
              st.sampled_from(["zeros", "ones", "randn", "rand", "0.1*randn", "(randn"]),
              st.lists(SIZES, max_size=5), st.sampled_from(["", ",'single'", ",'double'", ")"])),
    st.builds(lambda d: "(" * d + "1" + ")" * d, st.integers(0, 300)),
    st.builds(lambda d: "[" * d + "]" * d, st.integers(0, 300)),
    st.text(alphabet=EXPR_CHARS, max_size=60),
)

# --------------------------------------------------------------------------------------------
# strategies: specs

LAYER_TYPES = sorted(LAYER_CLASSES)
FIELD_NAMES = ["name", "stride", "pad", "pool", "method", "rate", "fraction", "leak", "units",
               "param", "dilate", "numGroups", "upsample", "crop", "epsilon", "p", "noRoot",
               "aggregate", "loss", "topK", "threshold", "instanceWeights", "scaling", "seed",
               "return_sequences", "dropout", "recurrent_dropout", "learningRate",
               "weightDecay", "filters", "biases", "strid", "opts", "precious"]


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.sampled_from(["a", "type", "x", "subtract", "scale"]), inner,
                        max_size=3)), max_leaves=8)


VALUES = _values()
WEIGHTS = st.one_of(
    st.lists(EXPRESSIONS, max_size=4),
    st.builds(lambda h, w, c, k: [f"0.1*randn({h},{w},{c},{k},'single')",
                                  f"zeros(1,{k},'single')"], SIZES, SIZES, SIZES, SIZES),
    VALUES,
)


def _layer() -> st.SearchStrategy[dict[str, Any]]:
    fields = st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=4)
    kind = st.one_of(st.sampled_from(LAYER_TYPES), st.sampled_from(["bogus", "custom", "Conv"]),
                     SCALARS)
    return st.builds(lambda t, f, w, has_w: {"type": t, **f, **({"weights": w} if has_w else {})},
                     kind, fields, WEIGHTS, st.booleans())


LAYERS = _layer()


def _plausible() -> st.SearchStrategy[dict[str, Any]]:
    """conv -> relu -> pool -> conv -> softmaxloss with small sizes: mostly loadable."""
    small = st.integers(1, 5)

    def build(h: int, c: int, k: int, f: int, p: int, s: int, pad: int, classes: int,
              extra: dict[str, Any]) -> dict[str, Any]:
        return {"name": "plausible", "input": [h, h, c],
                "layers": [{"type": "conv", "weights": [f"0.1*randn({f},{f},{c},{k},'single')",
                                                        f"zeros(1,{k},'single')"], "pad": pad},
                           {"type": "relu"},
                           {"type": "pool", "method": "max", "pool": p, "stride": s},
                           {"type": "conv", "weights": [f"0.1*randn(1,1,{k},{classes})",
                                                        "[]"]},
                           {"type": "softmaxloss"}], **extra}

    extras = st.dictionaries(st.sampled_from(["seed", "train", "vars", "defines", "meta"]),
                             VALUES, max_size=2)
    return st.builds(build, st.integers(1, 12), small, small, small, small, small,
                     st.integers(0, 3), small, extras)


SPEC_KEYS = ["name", "description", "input", "vars", "defines", "meta", "train", "data",
             "weights", "seed", "layrs"]
SPEC_DICTS = st.one_of(
    _plausible(),
    st.builds(lambda layers, rest: {"layers": layers, **rest},
              st.lists(LAYERS, max_size=5),
              st.dictionaries(st.sampled_from(SPEC_KEYS), VALUES, max_size=3)),
    VALUES,
)

YAML_TOKENS = ["&a ", "*a", "*b", "&b [*a, *a, *a]", "<<: *a", "<<: [*a, 3]", "!!python/object"
               "/apply:os.system ['true']", "!!python/name:os.system", "!!binary ", "!foo ",
               "!!str ", "!!int ", "!!float ", "!!map ", ".nan", "-.inf", "yes", "no", "on",
               "~", "null", "0x1F", "0o17", "1e400", "2024-01-01", "\t", "---\n", "...\n",
               "? ", ": ", "- ", "[", "]", "{", "}", ",", "#", "'", '"', "|\n", ">\n",
               "%YAML 1.1\n", "\ufeff", "\x00", "\x85", "\u2028", "\r", "\\", "=", "<<", "@", "`"]


def _mutate(text: str, edits: list[tuple[int, int, int, str]]) -> str:
    for kind, a, b, token in edits:
        if not text:
            text = token
            continue
        i, j = sorted((a % (len(text) + 1), b % (len(text) + 1)))
        if kind == 0:
            text = text[:i] + token + text[i:]
        elif kind == 1:
            text = text[:i] + text[j:]
        elif kind == 2:
            text = text[:i] + text[i:j] * 2 + text[j:]
        else:
            text = text[:i] + token + text[j:]
    return text


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 10**6),
                           st.sampled_from(YAML_TOKENS)), max_size=4)


def _dump(spec: Any, flow: bool | None) -> str:
    try:
        return yaml.safe_dump(spec, default_flow_style=flow, sort_keys=False,
                              allow_unicode=True)
    except (yaml.YAMLError, ValueError, TypeError):
        return str(spec)


YAML_DOCS: st.SearchStrategy[str | bytes] = st.one_of(
    st.builds(_dump, SPEC_DICTS, st.sampled_from([None, True, False])),
    st.builds(lambda spec, flow, edits: _mutate(_dump(spec, flow), edits),
              SPEC_DICTS, st.sampled_from([None, True, False]), EDITS),
    st.builds(_mutate, st.text(alphabet="abcdefxyz019-.:[]{},&*!?|>#'\" \n\t", max_size=120),
              EDITS),
    st.binary(max_size=200),
    st.builds(lambda n, kind: "layers: " + kind[0] * n + kind[1] * n + "\n",
              st.integers(0, 3000), st.sampled_from([("[", "]"), ("{a: ", "}")])),
)

# --------------------------------------------------------------------------------------------
# strategies: .m files

M_FIELD = st.sampled_from(["type", "weights", "stride", "pad", "pool", "method", "rate",
                           "fraction", "leak", "name", "learningRate", "strid", "filters"])
M_VALUES = st.one_of(STRING_TEXT, EXPRESSIONS, st.sampled_from(
    ["'conv'", "'relu'", "'pool'", "'softmaxloss'", "'dropout'", "'max'", "{{}}", "{}",
     "{{0.1*randn(3,3,1,4,'single'), zeros(1,4,'single')}}", "{{1, 2}}", "{1, 2}", "[1 2]",
     "true", "NaN"]))
M_STRUCT = st.builds(lambda pairs: "struct(" + ", ".join(f"'{k}', {v}" for k, v in pairs) + ")",
                     st.lists(st.tuples(M_FIELD, M_VALUES), max_size=5))
M_STATEMENTS = st.one_of(
    st.builds(lambda s: f"net.layers{{end+1}} = {s};", M_STRUCT),
    st.builds(lambda ss: "net.layers = {" + " ".join(ss) + "};", st.lists(M_STRUCT, max_size=3)),
    st.builds(lambda k, s: f"net.layers{{{k}}} = {s};", st.sampled_from(["1", "0", "end",
                                                                         "1e9", "2"]), M_STRUCT),
    st.builds(lambda f, v: f"net.layers{{end}}.{f} = {v};", M_FIELD, M_VALUES),
    st.builds(lambda n, e: f"{n} = {e};", st.sampled_from(["f", "n", "scale", "opts.lr", "net",
                                                           "net.meta.inputSize",
                                                           "net.meta.trainOpts.learningRate",
                                                           "net.meta.classes.name"]),
              EXPRESSIONS),
    st.builds(lambda e: f"rng({e});", EXPRESSIONS),
    st.sampled_from(["function net = init(varargin)", "end", "for i = 1:3", "if x", "else",
                     "% a comment", "%{", "%}", "...", "eval('x')", "system('true')",
                     "load imdb.mat", "!ls", "vl_setupnn;", "net = vl_simplenn_tidy(net);",
                     "vl_simplenn_display(net)", "clear all", "[a, b] = size(x);",
                     "x = @(t) t + 1;", "global g", "function y = helper(x)", "return"]),
    st.text(alphabet=EXPR_CHARS, max_size=40),
)
M_PLAUSIBLE = st.builds(
    lambda c, k, f, extra, sep: sep.join([
        "net.layers = {};",
        f"net.layers{{end+1}} = struct('type', 'conv', 'weights', "
        f"{{{{0.1*randn({f},{f},{c},{k},'single'), zeros(1,{k},'single')}}}}, 'pad', 0);",
        "net.layers{end+1} = struct('type', 'relu');",
        "net.layers{end+1} = struct('type', 'pool', 'method', 'max', 'pool', [2 2]);",
        "net.layers{end+1} = struct('type', 'softmaxloss');", *extra]),
    SIZES, SIZES, SIZES, st.lists(M_STATEMENTS, max_size=2), st.sampled_from(["\n", "; "]))
M_SOURCES = st.one_of(
    M_PLAUSIBLE,
    st.builds(lambda stmts, sep, edits: _mutate(sep.join(stmts), edits),
              st.lists(M_STATEMENTS, max_size=8), st.sampled_from(["\n", "; ", ", ", "\r\n"]),
              EDITS),
    st.text(max_size=100),
)

# --------------------------------------------------------------------------------------------
# the property


@dataclass
class Tally:
    """What one target's run saw."""

    inputs: int = 0
    loaded: int = 0
    refused: int = 0
    slowest: float = 0.0
    slowest_input: str = ""
    peak: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Target:
    """Runs one reader on one input and checks the property."""

    def __init__(self, name: str, call: Callable[[Any], Any]) -> None:
        self.name = name
        self.call = call
        self.tally = Tally()

    def check(self, value: Any) -> None:
        tally = self.tally
        tally.inputs += 1
        tracemalloc.start()
        start = time.perf_counter()
        try:
            self.call(value)
        except SpecError as err:
            tally.refused += 1
            kind = type(err).__name__
            tally.errors[kind] = tally.errors.get(kind, 0) + 1
            assert str(err).count("\n") == 0, f"a message of several lines: {err!r}"
        else:
            tally.loaded += 1
        finally:
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            if elapsed > tally.slowest:
                tally.slowest, tally.slowest_input = elapsed, repr(value)[:80]
            tally.peak = max(tally.peak, peak)
        if elapsed >= TIME_LIMIT:  # tracemalloc slows Python down: time it again without
            start = time.perf_counter()
            try:
                self.call(value)
            except SpecError:
                pass
            elapsed = time.perf_counter() - start
        assert elapsed < TIME_LIMIT, f"{self.name}: {elapsed:.1f} s for one input"
        assert peak < MEMORY_LIMIT, f"{self.name}: {peak / 2**20:.0f} MiB for one input"


def _load_yaml_file(folder: Path) -> Callable[[str | bytes], Any]:
    path = folder / "fuzz.yaml"

    def call(doc: str | bytes) -> Any:
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        return layerspec.load(path)
    return call


def _evaluate(text: str) -> Any:
    return evaluate(text, names={"x": np.ones((2, 3)), "f": 0.01, "n": 3.0},
                    rng=np.random.default_rng(0))


def targets(folder: Path) -> dict[str, tuple[Target, st.SearchStrategy[Any]]]:
    return {
        "yaml": (Target("yaml", _load_yaml_file(folder)), YAML_DOCS),
        "dict": (Target("dict", layerspec.load), SPEC_DICTS),
        "expr": (Target("expr", _evaluate), EXPRESSIONS),
        "mfile": (Target("mfile", lambda text: translate_m(text, "fuzz.m")), M_SOURCES),
    }


def run_target(target: Target, strategy: st.SearchStrategy[Any], examples: int,
               seed: int | None = None) -> None:
    """Check the property on ``examples`` inputs (raises on the first failure, minimised)."""
    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy)
    def prop(value: Any) -> None:
        target.check(value)

    if seed is not None:
        prop = __import__("hypothesis").seed(seed)(prop)
    prop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fuzz layerspec's readers (see the module doc).")
    p.add_argument("targets", nargs="*", default=["yaml", "dict", "expr", "mfile"])
    p.add_argument("-n", "--examples", type=int, default=10_000, help="inputs per target")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: derandomized)")
    p.add_argument("-v", "--verbose", action="store_true", help="show each target's slowest input")
    args = p.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        available = targets(Path(tmp))
        for name in args.targets:
            target, strategy = available[name]
            start = time.perf_counter()
            outcome = "ok"
            try:
                run_target(target, strategy, args.examples, args.seed)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next target
                failed += 1
                outcome = f"FAILED: {type(exc).__name__}: {exc}"
            t = target.tally
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.errors.items()))
            print(f"{name:6} {t.inputs:7,} inputs in {time.perf_counter() - start:6.1f} s: "
                  f"{t.loaded:,} loaded, {t.refused:,} refused ({kinds}); slowest "
                  f"{t.slowest * 1000:.0f} ms, peak {t.peak / 2**20:.1f} MiB -- {outcome}",
                  flush=True)
            if args.verbose:
                print(f"       slowest input: {t.slowest_input}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
