"""`layerspec port X.m`: Matlab source -> spec (layerspec.mfile), nothing ever run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import layerspec
from layerspec.cli import main
from layerspec.errors import MatlabSourceError, SpecError
from layerspec.expr import normalize_define_key
from layerspec.mfile import port_m, to_yaml, translate_m
from layerspec.port import port
from layerspec.spec import layer_to_dict, spec_from_source

HERE = Path(__file__).resolve().parent
PORT = HERE / "data" / "port"
SPECS = HERE.parent / "specs"
SEED_DEFINE = "size(imdb.images.data,1)=320"


def _geometry(spec):
    """Tidied layers without their weights (the initializers are compared separately)."""
    return [{k: v for k, v in layer_to_dict(layer).items() if k != "weights"}
            for layer in spec.layers]


def _inits(spec):
    return [[normalize_define_key(w.expr) for w in layer.weights]
            if getattr(layer, "weights", None) else None for layer in spec.layers]


# ----- the seed article and cnn_mnist_init --------------------------------------------------

def test_seed_article_ports_like_seed_cnn(tmp_path, capsys):
    out = tmp_path / "seed.yaml"
    assert main(["port", str(PORT / "seed_article.m"), "-o", str(out),
                 "--define", SEED_DEFINE]) == 0
    assert "wrote" in capsys.readouterr().out
    spec, _ = spec_from_source(out)
    ref, _ = spec_from_source(SPECS / "seed_cnn.yaml")
    assert _geometry(spec) == _geometry(ref)
    assert _inits(spec) == _inits(ref)
    assert dict(spec.defines) == {"size(imdb.images.data,1)": 320}
    text = out.read_text()
    assert "fraction: 0.5" in text            # kept as written (alias of rate)
    assert "seed_article.m:1:16" in text        # each layer cites its source position
    assert "mix double and single" in text      # the note on mixed precision
    # the spec is self-contained: check needs no --define, only the input size
    assert main(["check", str(out), "--input", "320,320,3"]) == 0


def test_seed_article_needs_the_define(tmp_path, capsys):
    out = tmp_path / "seed.yaml"
    assert main(["port", str(PORT / "seed_article.m"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.endswith("seed_article.m:1:98: error: unknown name 'imdb.images.data' in "
                        "'size(imdb.images.data,1)': bind it with --define "
                        "'size(imdb.images.data,1)=VALUE' (or assign it before use)")
    assert not out.exists()


def test_seed_article_input_option(tmp_path):
    out = tmp_path / "seed.yaml"
    port(PORT / "seed_article.m", out, {"size(imdb.images.data, 1)": 320},
         input_size=(320, 320, 3))
    spec, _ = spec_from_source(out)
    assert spec.input == (320, 320, 3)


def test_cnn_mnist_init_ports_like_lenet_mnist(tmp_path, capsys):
    out = tmp_path / "lenet.yaml"
    assert main(["port", str(PORT / "cnn_mnist_init.m"), "-o", str(out)]) == 0
    notes = capsys.readouterr().err
    assert "rng('default') recorded as the spec's seed 0" in notes
    assert "option parsing (opts, vl_argparse) ignored" in notes
    assert "local functions after the main code are ignored" not in notes  # stops at 'end'
    spec, _ = spec_from_source(out)
    ref, _ = spec_from_source(SPECS / "lenet_mnist.yaml")
    assert _geometry(spec) == _geometry(ref)
    assert _inits(spec) == _inits(ref)
    assert spec.input == ref.input == (28, 28, 1)
    assert dict(spec.vars) == {"f": "1/100"}
    assert dict(spec.train) == {"learningRate": 0.001, "numEpochs": 20, "batchSize": 100}
    assert list(spec.meta["classes"]) == list(ref.meta["classes"])
    assert spec.seed == 0
    assert main(["check", str(out)]) == 0
    # same initializers and seed -> the same weights as the hand-written spec
    a, b = layerspec.load(out), layerspec.load(SPECS / "lenet_mnist.yaml")
    for wa, wb in zip(a.weights, b.weights, strict=True):
        for x, y in zip(wa, wb, strict=True):
            np.testing.assert_array_equal(x, y)


def test_cifar_style(tmp_path):
    ported = port_m(PORT / "cifar_style.m")
    raw = ported.raw
    assert raw["input"] == [16, 16, 3]
    assert raw["seed"] == 7
    assert raw["vars"] == {"sc": 0.01, "w": "sc*2"}
    assert raw["layers"][0]["weights"] == ["w*randn(5,5,3,32,'single')", "zeros(1,32,'single')"]
    assert raw["layers"][0]["learningRate"] == [0.1, 2]
    assert raw["layers"][1]["pad"] == [0, 1, 0, 1]
    assert raw["layers"][3] == {"type": "conv", "weights": ["0.05*randn(8,8,32,10,'single')",
                                                            "[]"], "stride": 1, "pad": 0}
    assert raw["train"] == {"learningRate": "[0.05*ones(1,3),0.005*ones(1,2)]",
                            "numEpochs": 5, "batchSize": 100, "weightDecay": 0.0001}
    assert raw["meta"]["classes"][:2] == ["airplane", "automobile"]
    assert any("trainOpts.gpus" in n for n in ported.notes)
    out = tmp_path / "c.yaml"
    out.write_text(to_yaml(ported))
    spec, _ = spec_from_source(out)
    assert list(spec.train["learningRate"]) == pytest.approx([0.05] * 3 + [0.005] * 2)
    net = layerspec.load(out)
    assert net.weights[0][0].shape == (5, 5, 3, 32) and net.weights[3][1].shape == (0,)
    assert main(["check", str(out)]) == 0


def test_statement_forms():
    text = """% comment line
x = 3 ; y = [1 2], z = 'max' ;
%{
net.layers = {} ;   this block is a comment
%}
net.layers = { struct('type','conv','weights',{{randn(3,3,1,4,'single') zeros(1,4,'single')}}, ...
                      'stride', [1; 1], 'pad', x-3)
               struct('type','pool','method',z,'pool',y+1) , struct('type','relu', 'leak', 0.1)
             } ;
net.layers{2}.stride = 2 ;
net.layers{end} = struct('type','sigmoid') ;
net.layers(end+1) = {struct('type','softmaxloss')} ;
net.meta.inputSize = [8 8 1 50] ;
vl_setupnn ;
"""
    raw = translate_m(text, "forms.m").raw
    assert raw["input"] == [8, 8, 1]
    assert raw["layers"] == [
        {"type": "conv", "weights": ["randn(3,3,1,4,'single')", "zeros(1,4,'single')"],
         "stride": [1, 1], "pad": 0},
        {"type": "pool", "method": "max", "pool": [2, 3], "stride": 2},
        {"type": "sigmoid"}, {"type": "softmaxloss"}]


def test_reassigned_variable_is_substituted():
    text = ("s = 0.1;\n"
            "net.layers{1} = struct('type','conv','weights',{{s*randn(3,3,1,4,'single'), []}});\n"
            "s = 0.2;\n"
            "net.layers{2} = struct('type','conv','weights',{{s*randn(3,3,4,4,'single'), []}});\n")
    raw = translate_m(text, "re.m").raw
    assert "vars" not in raw
    assert [lay["weights"][0] for lay in raw["layers"]] == [
        "0.1*randn(3,3,1,4,'single')", "0.2*randn(3,3,4,4,'single')"]


# ----- malformed sources: message and position ----------------------------------------------

RELU = "net.layers = {struct('type','relu')};\n"
BAD = [
    ("loop", "net.layers = {};\nfor i = 1:3\n  net.layers{end+1} = struct('type','relu');\nend\n",
     "2:1", "'for' statements cannot be translated"),
    ("if", RELU + "if x > 1, net.layers{1}.leak = 0.1; end\n", "2:1",
     "'if' statements cannot be translated"),
    ("while", "while true\nend\n", "1:1", "'while' statements cannot be translated"),
    ("eval", RELU + "eval('x = 1');\n", "2:1", "'eval' is never run"),
    ("system", "x = system('ls');\n", "1:5", "'system' is never run"),
    ("unix", RELU + "  unix('rm -rf /');\n", "2:3", "'unix' is never run"),
    ("feval", "net.layers = {struct('type','relu','leak',feval('f'))};\n", "1:43",
     "'feval' is never run"),
    ("evalin", "a = evalin('base', 'x');\n", "1:5", "'evalin' is never run"),
    ("load", "  data = load('imdb.mat');\n", "1:10", "'load' is never run"),
    ("bang", RELU + "!ls\n", "2:1", "shell escapes are never run"),
    ("call", RELU + "net = insertBnorm(net, 1);\n", "2:1",
     "cannot translate 'net = insertBnorm(net,1)'"),
    ("call2", RELU + "foo(1)\n", "2:1", "cannot translate the statement 'foo(1)'"),
    ("unknown", "net.layers = {struct('type','conv','weights',"
                "{{randn(3,3,nIn,8,'single'), []}})};\n", "1:58",
     "unknown name 'nIn' in 'nIn': bind it with --define 'nIn=VALUE'"),
    ("unknownfield", "net.layers = {struct('type','pool','pool',k)};\n", "1:43",
     "unknown name 'k'"),
    ("unknownfunc", "net.layers = {struct('type','pool','pool',mysize(3))};\n", "1:43",
     "unknown function 'mysize'"),
    ("string", "net.layers = {struct('type','relu)};\n", "1:29", "unterminated string"),
    ("bracket", "net.layers = {struct('type','relu');\n", "2:1",
     "missing '}' to close '{' at 1:14"),
    ("structarray", "net.layers = {struct('type',{'relu','relu'})};\n", "1:29",
     "makes a struct array"),
    ("badtype", "net.layers = {struct('type','cnv')};\n", "1:22",
     "layer 1: unknown layer type 'cnv' (did you mean 'conv'?)"),
    ("badfield", "net.layers = {struct('type','pool','strid',2,'pool',2)};\n", "1:36",
     "layer 1: pool: unknown field 'strid' (did you mean 'stride'?)"),
    ("index", "net.layers{3} = struct('type','relu');\n", "1:12",
     "net.layers{3}: there are 0 layers so far"),
    ("blockcomment", "%{\nnet.layers = {};\n", "1:1", "unterminated block comment"),
    ("multi", "[a, b] = size(x);\n", "1:1", "assignments to several outputs"),
    ("end", RELU + "end\n", "2:1", "unexpected 'end'"),
    ("shuffle", "rng('shuffle');\n" + RELU, "1:5", "seeds from the clock"),
    ("netfield", RELU + "net.foo = 1;\n", "2:1", "net.foo: not a SimpleNN field"),
    ("nolayers", "x = 1;\n", "1:1", "no layers found"),
]


@pytest.mark.parametrize("name,text,pos,message", BAD, ids=[b[0] for b in BAD])
def test_malformed(name, text, pos, message):
    with pytest.raises(MatlabSourceError) as info:
        translate_m(text, f"{name}.m")
    err = info.value
    assert isinstance(err, SpecError)
    prefix = f"{name}.m:{pos}: error: " if pos else f"{name}.m: error: "
    assert str(err).startswith(prefix), str(err)
    assert message in str(err)
    assert "\n" not in str(err)


def test_malformed_cli_exit_2(tmp_path, capsys):
    src = tmp_path / "bad.m"
    src.write_text(BAD[0][1])
    assert main(["port", str(src), "-o", str(tmp_path / "o.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.m:2:1: error: 'for' statements" in err


def test_skip_unsupported(tmp_path, capsys):
    src = tmp_path / "skip.m"
    src.write_text("net.layers = {};\nfor i = 1:3\n  net.layers{end+1} = struct('type','relu');\n"
                   "end\nnet.layers{end+1} = struct('type','relu');\n"
                   "if opts.bn, net.layers{1}.leak = 0.1; end, net.layers{1}.leak = 0.2\n")
    out = tmp_path / "skip.yaml"
    assert main(["port", str(src), "-o", str(out), "--skip-unsupported"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 2
    assert "skip.m:2:1: statement skipped: 'for'" in err
    spec, _ = spec_from_source(out)
    assert [(lay.type, lay.leak) for lay in spec.layers] == [("relu", 0.2)]
    # never-run calls are an error even then
    src.write_text(RELU + "system('ls')\n")
    assert main(["port", str(src), "-o", str(out), "--skip-unsupported"]) == 2


def test_port_m_file_errors(tmp_path, capsys):
    assert main(["port", str(tmp_path / "missing.m"), "-o", str(tmp_path / "o.yaml")]) == 2
    assert "missing.m: error: no such file" in capsys.readouterr().err
    shutil.copy(PORT / "cnn_mnist_init.m", tmp_path / "x.txt")
    assert main(["port", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o.yaml")]) == 2
    assert "cannot port a '.txt' file" in capsys.readouterr().err
