"""Tests for layerspec.expr: the safe Matlab expression tokenizer, parser and evaluator."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerspec.errors import ExpressionError
from layerspec.expr import (
    MAX_DEPTH,
    Binary,
    Call,
    Cell,
    Colon,
    End,
    Field,
    Matrix,
    Name,
    Number,
    Parser,
    Pos,
    Range,
    String,
    Transpose,
    Unary,
    dotted_name,
    evaluate,
    iter_nodes,
    normalize_define_key,
    parse,
    parse_define,
    source_text,
    tokenize,
)


def ev(text: str, **kw):
    return evaluate(text, **kw)


def err(text: str, **kw) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        evaluate(text, **kw)
    return info.value


def vals(x) -> list[float]:
    return np.asarray(x, dtype=float).reshape(-1, order="F").tolist()


# ---------------------------------------------------------------------------------------------
# precedence and scalars


@pytest.mark.parametrize("text, expected", [
    ("-2^2", -4.0),
    ("2^-1", 0.5),
    ("-2^-2", -0.25),
    ("2^-1^2", 0.25),          # (2^-1)^2: the exponent is a prefix-operator postfix expression
    ("1+2*3", 7.0),
    ("(1+2)*3", 9.0),
    ("2^3^2", 64.0),           # left-associative in Matlab
    ("10-4-3", 3.0),
    ("12/2/3", 2.0),
    ("2*-3", -6.0),
    ("1 - -2", 3.0),
    ("--2", 2.0),
    ("-(1+2)*2", -6.0),
    ("2\\6", 3.0),
    ("sqrt(2/(3*3*64))", float(np.sqrt(2 / (3 * 3 * 64)))),
    ("pi", float(np.pi)),
    ("1e-3", 0.001),
    (".5 + 5.", 5.5),
    ("1 < 2 && 3 > 2", True),
    ("1 == 2 || ~true", False),
    ("round(2.5) + round(-2.5)", 0.0),   # Matlab rounds halves away from zero
    ("mod(-1, 3)", 2.0),
    ("floor(7/2) + ceil(7/2) + fix(-3.5)", 4.0),
])
def test_scalar_precedence(text, expected):
    got = ev(text)
    assert got == expected
    assert type(got) is type(expected)


def test_scalars_are_python_floats():
    assert isinstance(ev("1+2"), float)
    assert isinstance(ev("size(ones(2,3), 2)"), int)
    assert ev("size(ones(2,3), 2) * 2") == 6.0


# ---------------------------------------------------------------------------------------------
# matrices, concatenation, ranges


@pytest.mark.parametrize("text, expected", [
    ("[1 -2]", [1.0, -2.0]),
    ("[1 -2 ]", [1.0, -2.0]),
    ("[1 - 2]", [-1.0]),
    ("[1-2]", [-1.0]),
    ("[1 +2]", [1.0, 2.0]),
    ("[a -b]", [2.0, -3.0]),
    ("[a - b]", [-1.0]),
    ("[a' b']", [2.0, 3.0]),
    ("[a (1)]", [2.0, 1.0]),
    ("[1, 2, 3]", [1.0, 2.0, 3.0]),
    ("[1 2 ...\n 3]", [1.0, 2.0, 3.0]),
    ("[min(1, -2) 3]", [-2.0, 3.0]),   # inside parentheses whitespace does not separate
])
def test_matrix_element_separation(text, expected):
    assert vals(ev(text, names={"a": 2.0, "b": 3.0})) == expected


def test_learning_rate_schedule_concatenation():
    lr = ev("[0.05*ones(1,3) 0.005*ones(1,2)]")
    assert isinstance(lr, np.ndarray) and lr.shape == (1, 5)
    assert vals(lr) == pytest.approx([0.05] * 3 + [0.005] * 2)
    lr = ev("[0.05*ones(1,30) 0.005*ones(1,10) 0.0005*ones(1,5)]")
    assert lr.shape == (1, 45)


def test_matrix_rows():
    m = ev("[1, 2; 3, 4]")
    assert m.shape == (2, 2) and m.tolist() == [[1, 2], [3, 4]]
    assert ev("[1 2\n 3 4]").tolist() == [[1, 2], [3, 4]]
    assert ev("[1 2;]").tolist() == [[1, 2]]
    assert ev("[[1;2], [3;4]]").tolist() == [[1, 3], [2, 4]]
    e = ev("[]")
    assert isinstance(e, np.ndarray) and e.shape == (0, 0)
    assert ev("[7]") == 7.0
    assert ev("[[] 1 2]").tolist() == [[1, 2]]


def test_matrix_product_and_division():
    assert ev("[1 2; 3 4] * [1; 1]").tolist() == [[3], [7]]
    assert ev("[1 2; 3 4]^2").tolist() == [[7, 10], [15, 22]]
    assert vals(ev("[2 4 6] / 2")) == [1, 2, 3]
    assert vals(ev("2 .^ [1 2 3]")) == [2, 4, 8]
    assert vals(ev("1 ./ [1 2 4]")) == [1, 0.5, 0.25]
    # implicit expansion aligns dimensions from the first, as in Matlab
    assert ev("[1; 2] + [10 20 30]").tolist() == [[11, 21, 31], [12, 22, 32]]
    assert ev("ones(2,3,2) + [1 2 3]").shape == (2, 3, 2)


@pytest.mark.parametrize("text, expected", [
    ("1:5", [1, 2, 3, 4, 5]),
    ("0:0.25:1", [0, 0.25, 0.5, 0.75, 1]),
    ("5:-2:1", [5, 3, 1]),
    ("0.1:0.1:0.3", [0.1, 0.2, 0.3]),
    ("1:0", []),
    ("(1:3)+1", [2, 3, 4]),
    ("1:3 == 2", [0, 1, 0]),
])
def test_ranges(text, expected):
    got = ev(text)
    assert got.shape == (1, len(expected))
    assert vals(got) == pytest.approx(expected)


def test_logspace_linspace():
    lr = ev("logspace(-2,-4,60)")
    assert lr.shape == (1, 60)
    assert lr[0, 0] == pytest.approx(0.01) and lr[0, -1] == pytest.approx(1e-4)
    assert vals(ev("linspace(0, 1, 5)")) == [0, 0.25, 0.5, 0.75, 1]
    assert ev("linspace(0, 1)").shape == (1, 100)


# ---------------------------------------------------------------------------------------------
# strings, transposes, cells


def test_transpose_versus_string():
    x = {"x": np.array([[1.0, 2.0, 3.0]])}
    assert ev("[1 2 3]'").shape == (3, 1)
    assert ev("x'", names=x).shape == (3, 1)
    assert ev("x''", names=x).shape == (1, 3)
    assert ev("x.'", names=x).shape == (3, 1)
    assert ev("(x+1)'", names=x).shape == (3, 1)
    assert ev("'abc'") == "abc"
    assert ev("'it''s'") == "it's"
    assert ev('"say ""hi"""') == 'say "hi"'
    assert ev("['ab' 'cd']") == "abcd"
    assert ev("{'a' 'b'}") == ["a", "b"]
    assert ev("x(2)'", names=x) == 2.0


def test_tokenizer_quote_rules():
    kinds = [(t.kind, t.text) for t in tokenize("a' + 'b'")]
    assert kinds[:2] == [("name", "a"), ("op", "'")]
    assert ("string", "'b'") in kinds
    assert [t.kind for t in tokenize("[a 'b']")][:3] == ["punct", "name", "string"]
    assert [t.kind for t in tokenize("case 'foo'")][:2] == ["name", "string"]
    assert tokenize("'x'")[0].value == "x"


def test_cells_and_struct():
    assert ev("{1, 'a'}") == [1.0, "a"]
    assert ev("{1; 2}") == [1.0, 2.0]
    assert ev("{1 2; 3 4}") == [[1.0, 2.0], [3.0, 4.0]]
    assert ev("{}") == []
    s = ev("struct('type','conv','weights',{{2*ones(1,2), zeros(1,2,'single')}},'stride',1)")
    assert s["type"] == "conv" and s["stride"] == 1.0
    assert len(s["weights"]) == 2 and s["weights"][1].dtype == np.float32


# ---------------------------------------------------------------------------------------------
# functions


def test_randn_shape_dtype_determinism():
    a = ev("randn(5,5,1,20,'single')", rng=np.random.default_rng(7))
    b = ev("randn(5,5,1,20,'single')", rng=np.random.default_rng(7))
    c = ev("randn(5,5,1,20,'single')", rng=np.random.default_rng(8))
    assert a.shape == (5, 5, 1, 20) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert ev("randn(3)", rng=np.random.default_rng(0)).shape == (3, 3)
    assert ev("rand([2 4])", rng=np.random.default_rng(0)).shape == (2, 4)
    assert ev("randn(2,3)", rng=np.random.default_rng(0)).dtype == np.float64
    r = ev("rand(1000,1)", rng=np.random.default_rng(0))
    assert 0 <= r.min() and r.max() < 1


def test_initializers_keep_single():
    f = ev("f*randn(5,5,1,20,'single')", names={"f": 0.01}, rng=np.random.default_rng(0))
    assert f.dtype == np.float32 and f.shape == (5, 5, 1, 20)
    z = ev("zeros(1,20,'single')")
    assert z.dtype == np.float32 and z.shape == (1, 20) and not z.any()
    w = ev("(randn(5,5,3,32,'single')-0.5)*0.01", rng=np.random.default_rng(0))
    assert w.dtype == np.float32
    w = ev("sqrt(2/(3*3*64))*randn(3,3,64,128,'single')", rng=np.random.default_rng(0))
    assert w.shape == (3, 3, 64, 128) and w.dtype == np.float32
    assert ev("single(2)*ones(2)").dtype == np.float32
    assert isinstance(ev("single(2)"), np.float32)
    assert ev("double(ones(2,'single'))").dtype == np.float64


def test_randn_without_rng():
    e = err("0.01*randn(3)")
    assert "random number generator" in e.message and (e.line, e.column) == (1, 6)


def test_size_with_names():
    x = {"x": np.zeros((28, 28, 1, 7)), "imdb": {"images": {"data": np.zeros((4, 5, 3, 320))}}}
    assert ev("size(x,2)", names=x) == 28
    assert ev("size(x,4)", names=x) == 7
    assert ev("size(x,5)", names=x) == 1
    assert ev("size(imdb.images.data,4)", names=x) == 320
    s = ev("size(x)", names=x)
    assert s.tolist() == [[28, 28, 1, 7]] and s.dtype.kind == "i"
    assert ev("zeros(size(x))", names=x).shape == (28, 28, 1, 7)
    assert ev("numel(x) / size(x, 4)", names=x) == 784.0
    assert ev("size(3)").tolist() == [[1, 1]]
    assert ev("size('abc', 2)") == 3


def test_sizes():
    assert ev("zeros(-1, 3)").shape == (0, 3)            # Matlab: negative sizes are 0
    assert ev("ones(2)").shape == (2, 2)
    assert ev("ones([2 3 4])").shape == (2, 3, 4)
    assert ev("zeros()") == 0.0
    assert ev("zeros(1, 3, 'uint8')").dtype == np.uint8
    assert ev("true(2, 1)").dtype == np.bool_
    e = err("zeros(1, 2.5)")
    assert "integers" in e.message and e.column == 10
    assert "NaN" in err("zeros(NaN)").message
    assert "finite" in err("ones(Inf, 1)").message
    assert "unknown class 'int7'" in err("zeros(2, 'int7')").message


def test_reductions_and_shapes():
    x = {"x": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    assert vals(ev("sum(x)", names=x)) == [5, 7, 9]
    assert vals(ev("sum(x, 2)", names=x)) == [6, 15]
    assert ev("sum(x(:))", names=x) == 21.0
    assert ev("max(max(x))", names=x) == 6.0
    assert vals(ev("max(x, [], 2)", names=x)) == [3, 6]
    assert vals(ev("min(x, 2)", names=x)) == [1, 2, 2, 2, 2, 2]
    assert vals(ev("mean(x)", names=x)) == [2.5, 3.5, 4.5]
    assert ev("prod([1 2 3 4])") == 24.0
    assert ev("sum([])") == 0.0
    assert ev("numel(x)", names=x) == 6
    assert ev("repmat([1 2], 2, 2)").tolist() == [[1, 2, 1, 2], [1, 2, 1, 2]]
    assert ev("reshape(1:6, 2, 3)").tolist() == [[1, 3, 5], [2, 4, 6]]   # column-major
    assert ev("reshape(1:6, [], 2)").shape == (3, 2)
    assert ev("cat(3, [1 2], [3 4])").shape == (1, 2, 2)
    assert ev("horzcat([1 2], 3)").tolist() == [[1, 2, 3]]
    assert ev("vertcat(1, 2)").tolist() == [[1], [2]]


def test_indexing():
    x = {"x": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), "c": ["a", 2.0]}
    assert ev("x(end)", names=x) == 6.0
    assert ev("x(2, 3)", names=x) == 6.0
    assert ev("x(2, :)", names=x).tolist() == [[4, 5, 6]]
    assert ev("x(:, end)", names=x).tolist() == [[3], [6]]
    assert ev("x(:)", names=x).shape == (6, 1)
    assert vals(ev("x(x > 3)", names=x)) == [4, 5, 6]
    assert ev("x(1, [1 end])", names=x).tolist() == [[1, 3]]
    assert ev("x(end-1, end)", names=x) == 3.0
    assert ev("c{1}", names=x) == "a"
    assert ev("c(2)", names=x) == [2.0]
    assert "out of bounds" in err("x(7)", names=x).message
    assert "start at 1" in err("x(0)", names=x).message


# ---------------------------------------------------------------------------------------------
# names and defines


def test_defines_by_exact_expression():
    text = "zeros(1, size(imdb.images.data,1), 'single')"
    z = ev(text, defines={"size(imdb.images.data, 1)": 320})
    assert z.shape == (1, 320) and z.dtype == np.float32
    assert ev("f*2", defines={"f": 0.01}) == 0.02
    assert ev("f*2", names={"f": 1.0}, defines={"f": 0.5}) == 1.0   # defines win
    assert ev("size(x , 1) + 1", defines={"size(x,1)": 4}) == 5.0
    assert ev("a.b + 1", defines={"a.b": 2}) == 3.0
    assert normalize_define_key("size( imdb.images.data , 1 )") == "size(imdb.images.data,1)"
    assert normalize_define_key("[1 -2]") == "[1,-2]"


def test_parse_define():
    assert parse_define("size(imdb.images.data, 1)=320") == ("size(imdb.images.data,1)", 320.0)
    key, value = parse_define("f = 1/100")
    assert key == "f" and value == pytest.approx(0.01)
    with pytest.raises(ExpressionError):
        parse_define("no equals here")


def test_unknown_name_message_and_position():
    e = err("0.01*size(imdb.images.data,1)")
    assert e.message.startswith("unknown name 'imdb' in '0.01*size(imdb.images.data,1)'")
    assert "--define 'size(imdb.images.data,1)=VALUE'" in e.message
    assert (e.line, e.column, e.file) == (1, 11, None)
    e = err("fc*randn(3)", names={"f": 1.0}, rng=np.random.default_rng(0))
    assert "did you mean 'f'?" in e.message and "--define fc=VALUE" in e.message
    assert (e.line, e.column) == (1, 1)


def test_unknown_field_and_function():
    names = {"imdb": {"images": {"data": np.zeros((2, 2))}}}
    e = err("size(imdb.images.dat, 1)", names=names)
    assert "has no field 'dat'" in e.message and "did you mean 'data'?" in e.message
    assert (e.line, e.column) == (1, 18)
    e = err("2 * zeroes(3)")
    assert "unknown function 'zeroes'" in e.message and "did you mean 'zeros'?" in e.message
    assert (e.line, e.column) == (1, 5)


@pytest.mark.parametrize("name", ["eval", "system", "load", "feval", "evalin", "str2func"])
def test_forbidden_calls(name):
    e = err(f"1 + {name}('rm -rf /')")
    assert e.message == f"'{name}' is not allowed: layerspec never runs Matlab code"
    assert (e.line, e.column) == (1, 5)


def test_forbidden_without_parentheses_and_dotted():
    assert "not allowed" in err("system").message
    assert "'py' is not allowed" in err("py.os.system('ls')").message


# ---------------------------------------------------------------------------------------------
# limits


def test_element_limit_is_instant():
    t0 = time.perf_counter()
    e = err("zeros(1e9,1e9)")
    assert time.perf_counter() - t0 < 0.5
    assert e.message == "zeros(1e9,1e9) would have 1e18 elements; the limit is 5e7"
    assert (e.line, e.column) == (1, 1)


@pytest.mark.parametrize("text", [
    "ones(1, 101)", "1:101", "repmat(1, 11, 10)", "(1:11)' + (1:10)", "linspace(0, 1, 101)",
    "rand(101, 1)", "ones(11, 1) * ones(1, 10)", "[1:60 1:60]", "cell(1, 200)",
])
def test_element_limit_everywhere(text):
    e = err(text, max_elements=100, rng=np.random.default_rng(0))
    assert "limit is 100" in e.message


def test_deep_nesting_is_a_clean_error():
    for text in ["(" * 1000 + "1" + ")" * 1000, "[" * 1000 + "]" * 1000,
                 "-" * 5000 + "1", "+".join(["1"] * 5000), "1" + "'" * 5000,
                 "abs(" * 300 + "1" + ")" * 300]:
        e = err(text)
        assert "nested too deeply" in e.message
        assert e.line == 1 and e.column is not None
    assert ev("+".join(["1"] * (MAX_DEPTH - 1))) == MAX_DEPTH - 1
    assert ev("(" * 40 + "2" + ")" * 40) == 2.0


def test_text_length_limit():
    assert "too long" in err("1+" * 60_000 + "1").message


# ---------------------------------------------------------------------------------------------
# errors and positions


@pytest.mark.parametrize("text, column, fragment", [
    ("1 + * 2", 5, "expected an expression but found '*'"),
    ("zeros(1,2", 10, "missing ')' to close '('"),
    ("[1 2", 5, "missing ']'"),
    ("1 2", 3, "unexpected '2'"),
    ("a $ b", 3, "unexpected character '$'"),
    ("'abc", 1, "unterminated string"),
    ("x(1,)", 5, "expected an expression but found ')'"),
    ("2x", 1, "invalid number"),
    ("[1,,2]", 4, "unexpected ','"),
    ("end + 1", 1, "'end' can only be used inside an index"),
    ("@(x) x", 1, "function handles"),
    ("1:2:3:4", 6, "at most three parts"),
    ("", 1, "empty expression"),
    ("x = 1", 3, "unexpected '='"),
])
def test_syntax_errors_at_right_column(text, column, fragment):
    with pytest.raises(ExpressionError) as info:
        parse(text)
    e = info.value
    assert fragment in e.message
    assert (e.line, e.column, e.file) == (1, column, None)


@pytest.mark.parametrize("text, column, fragment", [
    ("[1 2] + [1 2 3]", 7, "sizes do not match for '+': 1x2 and 1x3"),
    ("[1 2] * [3 4]", 7, "inner matrix dimensions do not agree"),
    ("[1 2; 3]", 1, "not consistent"),
    ("'a' + 1", 5, "cannot use a string"),
    ("ones(3,4,2)'", 12, "transpose is not defined for N-D arrays"),
    ("reshape(1:6, 4, 2)", 1, "cannot reshape"),
    ("[1 2] / [1 2]", 7, "matrix division"),
])
def test_evaluation_errors_at_operator(text, column, fragment):
    e = err(text)
    assert fragment in e.message
    assert (e.line, e.column) == (1, column)


def test_position_offsets():
    with pytest.raises(ExpressionError) as info:
        parse("1 + * 2", line=14, column=17)
    assert (info.value.line, info.value.column) == (14, 21)
    with pytest.raises(ExpressionError) as info:
        parse("[1 2\n 3 $]", line=14, column=17)
    assert (info.value.line, info.value.column) == (15, 4)     # later lines start at column 1
    e = err("0.5 * imdb", line=14, column=17)
    assert (e.line, e.column) == (14, 23)
    node = parse("zeros(1e9, 1e9)", line=3, column=9)
    assert node.pos == Pos(3, 9)
    with pytest.raises(ExpressionError) as info:
        evaluate(node)
    assert (info.value.line, info.value.column) == (3, 9)
    assert info.value.located(file="net.yaml").file == "net.yaml"
    assert str(info.value).startswith("net.yaml:3:9: error: zeros(1e9,1e9) would have")


# ---------------------------------------------------------------------------------------------
# parser API and syntax tree


def test_tree_nodes():
    node = parse("a:2:b")
    assert isinstance(node, Range) and isinstance(node.step, Number)
    node = parse("x(:, end)")
    assert isinstance(node, Call) and isinstance(node.args[0], Colon)
    assert isinstance(node.args[1], End)
    node = parse("-2^2")
    assert isinstance(node, Unary) and isinstance(node.operand, Binary)
    node = parse("a.b.c(1)'")
    assert isinstance(node, Transpose) and isinstance(node.operand, Call)
    assert isinstance(node.operand.target, Field) and dotted_name(node.operand.target) == "a.b.c"
    node = parse("struct('type','conv','weights',{{f*randn(5,5,1,20,'single'), zeros(1,20)}})")
    assert isinstance(node, Call) and dotted_name(node.target) == "struct"
    inner = node.args[3]
    assert isinstance(inner, Cell) and isinstance(inner.rows[0][0], Cell)
    assert len(inner.rows[0][0].rows[0]) == 2
    names = {n.name for n in iter_nodes(node) if isinstance(n, Name)}
    assert names == {"struct", "f", "randn", "zeros"}
    assert isinstance(parse("[1 2; 3 4]"), Matrix)
    assert isinstance(parse("'x'"), String)
    assert parse("1 + 2").pos == Pos(1, 3)


@pytest.mark.parametrize("text, canonical", [
    ("size( imdb.images.data , 1 )", "size(imdb.images.data,1)"),
    ("[1 -2]", "[1,-2]"),
    ("[1 - 2]", "[1-2]"),
    ("[a' b'; 1 2]", "[a',b';1,2]"),
    ("(1+2)*3", "(1+2)*3"),
    ("((a))", "a"),
    ("-2^2", "-2^2"),
    ("(-2)^2", "(-2)^2"),
    ("2^-1", "2^-1"),
    ("2^(3^2)", "2^(3^2)"),
    ("a-(b-c)", "a-(b-c)"),
    ("(1:3)'", "(1:3)'"),
    ("'it''s'", "'it''s'"),
    ("x(:, end)", "x(:,end)"),
    ("c{1}", "c{1}"),
])
def test_source_text(text, canonical):
    assert source_text(parse(text)) == canonical
    assert source_text(parse(canonical)) == canonical


def test_parser_drives_statements():
    src = ("opts.scale = 1 ; % comment\n"
           "%{\nblock 'comment'\n%}\n"
           "net.layers{end+1} = struct('type', 'conv', ...\n"
           "    'stride', 1) ;\n"
           "lr = [0.05*ones(1,30) 0.005*ones(1,10)]\n")
    p = Parser(tokenize(src))
    out = []
    while True:
        p.skip_newlines()
        if p.at_end:
            break
        lhs = p.parse_expression()
        p.expect("op", "=")
        rhs = p.parse_expression()
        p.accept("punct", ";")
        out.append((source_text(lhs), source_text(rhs), rhs.pos))
    assert out == [
        ("opts.scale", "1", Pos(1, 14)),
        ("net.layers{end+1}", "struct('type','conv','stride',1)", Pos(5, 21)),
        ("lr", "[0.05*ones(1,30),0.005*ones(1,10)]", Pos(7, 6)),
    ]


# ---------------------------------------------------------------------------------------------
# properties

_PIECES = list("0123456789.+-*/\\^'\"()[]{},;:=~<>&| \n\tabxend$!@%") + [
    "zeros(", "ones(", "randn(", "size(", "x", "1e9", "...", "repmat(", "reshape(", "cat(",
    "s.a", "'single'", "logspace(", "sum(", "max(", "struct(", ".*", ".^", ".'", "Inf", "NaN",
    "[]", "end", "system(",
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_random_text_evaluates_or_raises_expression_error(text):
    names = {"x": np.arange(6.0).reshape(2, 3), "a": 2.0, "s": {"a": 1.0}}
    try:
        node = parse(text)
    except ExpressionError as e:
        assert e.line is not None and e.column is not None
        return
    canonical = source_text(node)
    assert source_text(parse(canonical)) == canonical
    try:
        evaluate(node, names=names, rng=np.random.default_rng(0), max_elements=10_000)
    except ExpressionError as e:
        assert e.line is not None and e.column is not None
