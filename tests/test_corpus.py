"""The bad-input corpus (tests/corpus/): every file through the command line, one table row each.

A row names the bad file, the command that reads it, the error class, a fragment of the message
and, for every text input (and for binary files named by a spec), the ``file:line:col`` the
error must point at. Binary files (``.mat``, ``.npz``, idx) are written by
``tools/make_bad_corpus.py``; the specs under ``use/`` only drive a binary data or weights
file through ``layerspec run``/``check``. The command runs in-process (``layerspec.cli.main``),
with the error object caught on its way to stderr; a few rows also run in a subprocess, to
check that stderr is exactly one line and never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerspec.cli import main
from layerspec.errors import (
    CheckpointError,
    DataError,
    ExpressionError,
    MatFileError,
    MatlabSourceError,
    ShapeError,
    SpecError,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus"
#: corpus files that are not bad inputs themselves
HELPERS = {"README.md", "data/idx_labels.gz"}


@dataclass(frozen=True)
class Row:
    file: str                 # the bad file, relative to tests/corpus/
    command: str              # check | run | port | eval [use/driver.yaml] [--options]
    error: type[SpecError]    # the exact class raised
    fragment: str             # part of the message
    at: str | None            # "file:line:col" (relative to tests/corpus/), None: no position

    @property
    def id(self) -> str:
        return self.file


S, X, D = SpecError, ExpressionError, DataError
M, F, C, SH = MatlabSourceError, MatFileError, CheckpointError, ShapeError

ROWS = [
    # ---- spec YAML: the reader ---------------------------------------------------------
    Row("spec/empty.yaml", "check", S, "file is empty", "spec/empty.yaml:1:1"),
    Row("spec/comments_only.yaml", "check", S, "file is empty", "spec/comments_only.yaml:1:1"),
    Row("spec/nonutf8.yaml", "check", S, "byte 0xe9 at offset 41 is not valid UTF-8",
        "spec/nonutf8.yaml:2:10"),
    Row("spec/utf16.yaml", "check", S, "it looks like UTF-16; save it as UTF-8",
        "spec/utf16.yaml:1:1"),
    Row("spec/nul_byte.yaml", "check", S, "a NUL byte (U+0000) is not allowed",
        "spec/nul_byte.yaml:7:14"),
    Row("spec/tab_indent.yaml", "check", S, "found character '\\t' that cannot start any token",
        "spec/tab_indent.yaml:7:1"),
    Row("spec/unclosed_flow.yaml", "check", S, "expected ',' or '}'",
        "spec/unclosed_flow.yaml:8:5"),
    Row("spec/second_document.yaml", "check", S, "a second YAML document starts here",
        "spec/second_document.yaml:12:1"),
    Row("spec/alias_bomb.yaml", "check", S, "too many nodes after expanding aliases",
        "spec/alias_bomb.yaml:7:8"),
    Row("spec/alias_recursive.yaml", "check", S, "alias '*l' is inside the node it refers to",
        "spec/alias_recursive.yaml:2:27"),
    Row("spec/alias_undefined.yaml", "check", S, "alias '*relu' has no anchor '&relu'",
        "spec/alias_undefined.yaml:7:5"),
    Row("spec/deep_flow.yaml", "check", S, "nesting is deeper than 64 levels",
        "spec/deep_flow.yaml:2:72"),
    Row("spec/deep_block.yaml", "check", S, "nesting is deeper than 64 levels",
        "spec/deep_block.yaml:34:67"),
    Row("spec/duplicate_key.yaml", "check", S, "duplicate key 'stride' (first given at line 8",
        "spec/duplicate_key.yaml:8:51"),
    Row("spec/duplicate_layers.yaml", "check", S, "duplicate key 'layers' (first given at line 4)",
        "spec/duplicate_layers.yaml:12:1"),
    Row("spec/key_on.yaml", "check", S, "keys must be strings, but 'on' is read as a boolean",
        "spec/key_on.yaml:2:1"),
    Row("spec/python_apply.yaml", "check", S,
        "tag '!!python/object/apply:os.system' is not allowed", "spec/python_apply.yaml:2:7"),
    Row("spec/python_exec.yaml", "check", S,
        "tag '!!python/object/apply:builtins.exec' is not allowed",
        "spec/python_exec.yaml:7:5"),
    Row("spec/python_name.yaml", "check", S, "tag '!!python/name:os.system' is not allowed",
        "spec/python_name.yaml:2:7"),
    Row("spec/python_module.yaml", "check", S, "tag '!!python/module:os' is not allowed",
        "spec/python_module.yaml:2:7"),
    Row("spec/binary_tag.yaml", "check", S, "tag '!!binary' is not allowed",
        "spec/binary_tag.yaml:2:7"),
    Row("spec/local_tag.yaml", "check", S, "tag '!relu' is not allowed",
        "spec/local_tag.yaml:7:5"),
    Row("spec/pad_yes.yaml", "check", S, "pool: pad: expected a number, got a boolean ('yes'",
        "spec/pad_yes.yaml:8:56"),
    Row("spec/stride_nan.yaml", "check", S, "'.nan' is not a number a spec can use",
        "spec/stride_nan.yaml:8:48"),
    Row("spec/lr_inf.yaml", "check", S, "'.inf' is not a number a spec can use",
        "spec/lr_inf.yaml:12:23"),
    # ---- spec: the schema ----------------------------------------------------------------
    Row("spec/list_top.yaml", "check", S, "a spec is a mapping", "spec/list_top.yaml:2:1"),
    Row("spec/scalar_top.yaml", "check", S, "a spec is a mapping",
        "spec/scalar_top.yaml:3:1"),
    Row("spec/layers_empty.yaml", "check", S, "layers: expected a non-empty list",
        "spec/layers_empty.yaml:3:9"),
    Row("spec/layer_scalar.yaml", "check", S, "layer 2: expected a mapping such as {type: relu}",
        "spec/layer_scalar.yaml:7:5"),
    Row("spec/type_number.yaml", "check", S, "layer 2: type: expected a layer type name, got 3",
        "spec/type_number.yaml:7:12"),
    Row("spec/type_unknown.yaml", "check", S, "unknown layer type 'rleu' (did you mean 'relu'?)",
        "spec/type_unknown.yaml:7:12"),
    Row("spec/newline_in_type.yaml", "check", S, "unknown layer type 're\nlu'",
        "spec/newline_in_type.yaml:5:12"),
    Row("spec/unknown_field.yaml", "check", S, "unknown field 'strid' (did you mean 'stride'?)",
        "spec/unknown_field.yaml:8:40"),
    Row("spec/unknown_top_key.yaml", "check", S, "unknown top-level key 'trian'",
        "spec/unknown_top_key.yaml:12:1"),
    Row("spec/unknown_train_option.yaml", "check", S,
        "unknown cnn_train option 'batchsize' (did you mean 'batchSize'?)",
        "spec/unknown_train_option.yaml:12:9"),
    Row("spec/stride_text.yaml", "check", S, "stride: expected a number, got the text 'one'",
        "spec/stride_text.yaml:8:48"),
    Row("spec/pool_zero.yaml", "check", S, "pool: pool: must be >= 1, got 0",
        "spec/pool_zero.yaml:8:37"),
    Row("spec/pool_negative.yaml", "check", S, "pool: pool: must be >= 1, got -2",
        "spec/pool_negative.yaml:8:38"),
    Row("spec/pool_huge.yaml", "check", SH, "is smaller than the window extent 9223372036854775",
        "spec/pool_huge.yaml:8:5"),
    Row("spec/pad_ge_pool.yaml", "check", SH, "pad 2,2 must be smaller than the window size 2",
        "spec/pad_ge_pool.yaml:8:5"),
    Row("spec/input_zero.yaml", "check", S, "input: must be >= 1, got 0",
        "spec/input_zero.yaml:3:9"),
    Row("spec/input_negative.yaml", "check", S, "input: must be >= 1, got -6",
        "spec/input_negative.yaml:3:12"),
    Row("spec/input_fraction.yaml", "check", S, "input: expected a whole number, got 6.5",
        "spec/input_fraction.yaml:3:9"),
    Row("spec/input_two_numbers.yaml", "check", S, "input: expected 3 or 4 numbers, got 2",
        "spec/input_two_numbers.yaml:3:8"),
    Row("spec/wrong_channels.yaml", "check", SH,
        "the input has 4 channels but the filters are 3x3x5x3",
        "spec/wrong_channels.yaml:9:5"),
    Row("spec/bias_count.yaml", "check", SH, "3 filters need 3 biases (or none), got 7",
        "spec/bias_count.yaml:9:5"),
    Row("spec/filters_5d.yaml", "check", SH, "filters must have at most 4 dimensions",
        "spec/filters_5d.yaml:6:16"),
    Row("spec/filters_empty.yaml", "check", SH, "filters have an empty dimension [0, 3, 1, 4]",
        "spec/filters_empty.yaml:5:5"),
    Row("spec/weights_text.yaml", "check", S, "weights: expected a list of 2 initializers",
        "spec/weights_text.yaml:6:14"),
    Row("spec/dropout_rate.yaml", "check", S, "dropout: rate: must be < 1, got 1.5",
        "spec/dropout_rate.yaml:7:27"),
    Row("spec/dropout_both_names.yaml", "check", S, "'fraction' (0.3) and 'rate' (0.2)",
        "spec/dropout_both_names.yaml:7:32"),
    Row("spec/loss_not_last.yaml", "check", S, "softmaxloss 'layer2' must be the last layer",
        "spec/loss_not_last.yaml:7:5"),
    Row("spec/batch_zero.yaml", "check", S, "train: batchSize: must be >= 1, got 0",
        "spec/batch_zero.yaml:12:20"),
    Row("spec/epochs_negative.yaml", "check", S, "train: numEpochs: must be >= 1, got -3",
        "spec/epochs_negative.yaml:12:20"),
    Row("spec/seed_negative.yaml", "check", S, "seed: must be >= 0, got -1",
        "spec/seed_negative.yaml:12:7"),
    Row("spec/random_seed_text.yaml", "check", S,
        "train: randomSeed: expected a number, got the text 'x'",
        "spec/random_seed_text.yaml:12:21"),
    Row("spec/solver_opts_number.yaml", "check", S,
        "train: solverOpts: expected a mapping", "spec/solver_opts_number.yaml:12:21"),
    Row("spec/diagnose_huge_input.yaml", "check --diagnose", S,
        "--diagnose: a forward pass on 2 inputs of 20000x20000x3 would hold about 26.8 GiB",
        "spec/diagnose_huge_input.yaml:3:8"),
    Row("spec/weights_file_missing.yaml", "check", S, "missing.npz' not found",
        "spec/weights_file_missing.yaml:12:10"),
    # ---- spec: initializer expressions -------------------------------------------------
    Row("spec/zeros_huge.yaml", "check", X, "zeros(1e9,1e9) would have 1e18 elements",
        "spec/zeros_huge.yaml:6:47"),
    Row("spec/vars_huge.yaml", "check", X, "ones(1e9,1e9) would have 1e18 elements",
        "spec/vars_huge.yaml:5:3"),
    Row("spec/lr_schedule_huge.yaml", "check", S, "ones(1,1e12) would have 1e12 elements",
        "spec/lr_schedule_huge.yaml:12:23"),
    Row("spec/weights_eval.yaml", "check", X, "'eval' is not allowed: layerspec never runs",
        "spec/weights_eval.yaml:6:47"),
    Row("spec/weights_system.yaml", "check", X, "'system' is not allowed",
        "spec/weights_system.yaml:6:16"),
    Row("spec/weights_load.yaml", "check", X, "'load' is not allowed",
        "spec/weights_load.yaml:6:16"),
    Row("spec/weights_syntax.yaml", "check", X, "missing ')' to close '(' at 6:52",
        "spec/weights_syntax.yaml:6:65"),
    Row("spec/weights_unknown_name.yaml", "check", X, "unknown name 'scale'",
        "spec/weights_unknown_name.yaml:6:16"),
    Row("spec/weights_deep_parens.yaml", "check", X, "brackets are nested too deeply",
        "spec/weights_deep_parens.yaml:6:97"),
    # ---- spec: the data section (layerspec run) -----------------------------------------
    Row("spec/data_unknown_key.yaml", "run", D, "unknown key 'clases' (did you mean 'classes'?)",
        "spec/data_unknown_key.yaml:12:28"),
    Row("spec/data_classes_zero.yaml", "run", D, "'classes' must be at least 2, got 0",
        "spec/data_classes_zero.yaml:14:3"),
    Row("spec/data_huge.yaml", "run", D, "synthetic data of 1,000,000,000,200 images",
        "spec/data_huge.yaml:12:40"),
    Row("spec/input_huge.yaml", "run", D, "images of 100000x100000x1 would hold",
        "spec/input_huge.yaml:12:40"),
    Row("spec/labels_out_of_range.yaml", "run", D,
        "synthetic has 10 classes (labels up to 9) but the network gives 3 class scores",
        "spec/labels_out_of_range.yaml:12:8"),
    # ---- weights files (a spec's 'weights: X.npz') --------------------------------------
    Row("npz/weights_pickled.npz", "check use/weights_pickled.yaml", S,
        "array 'w3_0' holds Python objects (pickles), which layerspec never loads",
        "use/weights_pickled.yaml:12:10"),
    Row("npz/weights_truncated.npz", "check use/weights_truncated.yaml", S,
        "is not a readable .npz file (a truncated or damaged zip archive)",
        "use/weights_truncated.yaml:12:10"),
    Row("npz/weights_not_zip.npz", "check use/weights_not_zip.yaml", S,
        "is not a readable .npz file (not a zip archive", "use/weights_not_zip.yaml:12:10"),
    Row("npz/weights_missing_array.npz", "check use/weights_missing_array.yaml", S,
        "has no array for layer 4 (conv 'layer4') biases",
        "use/weights_missing_array.yaml:12:10"),
    Row("npz/weights_wrong_channels.npz", "check use/weights_wrong_channels.yaml", SH,
        "the input has 4 channels but the filters are 3x3x5x3",
        "use/weights_wrong_channels.yaml:9:5"),
    Row("npz/weights_huge_header.npz", "check use/weights_huge_header.yaml", S,
        "its header declares shape (1048576, 1048576) (4,398,046,511,104 bytes)",
        "use/weights_huge_header.yaml:12:10"),
    # ---- data files (a spec's 'data: {path: X}') ----------------------------------------
    Row("data/pickled.npz", "run use/data_pickled.yaml", D,
        "array 'y' holds Python objects (pickles)", "use/data_pickled.yaml:12:8"),
    Row("data/truncated.npz", "run use/data_truncated.yaml", D,
        "not a readable .npz file (a truncated or damaged zip archive)",
        "use/data_truncated.yaml:12:8"),
    Row("data/crc_error.npz", "run use/data_crc_error.yaml", D, "Bad CRC-32 for file 'x.npy'",
        "use/data_crc_error.yaml:12:8"),
    Row("data/huge_header.npz", "run use/data_huge_header.yaml", D,
        "its header declares shape (2147483648, 6, 6, 1)", "use/data_huge_header.yaml:12:8"),
    Row("data/labels_out_of_range.npz", "run use/data_labels_out_of_range.yaml", D,
        "has 8 classes (labels up to 7) but the network gives 3 class scores",
        "use/data_labels_out_of_range.yaml:12:7"),
    Row("data/labels_negative.npz", "run use/data_labels_negative.yaml", D,
        "label -5 is out of range", "use/data_labels_negative.yaml:12:8"),
    Row("data/labels_fractional.npz", "run use/data_labels_fractional.yaml", D,
        "labels must be integers", "use/data_labels_fractional.yaml:12:8"),
    Row("data/label_count.npz", "run use/data_label_count.yaml", D, "19 labels for 20 images",
        "use/data_label_count.yaml:12:8"),
    Row("data/images_text.npz", "run use/data_images_text.yaml", D,
        "images must be real numbers, got dtype <U1", "use/data_images_text.yaml:12:8"),
    Row("data/images_nan.npz", "run use/data_images_nan.yaml", D,
        "images contain NaN or infinite values", "use/data_images_nan.yaml:12:8"),
    Row("data/wrong_size.npz", "run use/data_wrong_size.yaml", D,
        "images are 5x5x1 but the spec's input is 6x6x1", "use/data_wrong_size.yaml:12:7"),
    Row("data/idx_images_bad_magic", "run use/data_idx_bad_magic.yaml", D,
        "has unknown element type 0x42", "use/data_idx_bad_magic.yaml:12:8"),
    Row("data/idx_images_truncated.gz", "run use/data_idx_truncated.yaml", D,
        "is a damaged or truncated gzip file", "use/data_idx_truncated.yaml:12:8"),
    Row("data/idx_images_huge.gz", "run use/data_idx_huge.yaml", D,
        "its header declares 2147483648 x 6 x 6 elements", "use/data_idx_huge.yaml:12:8"),
    Row("data/imdb_labels_out_of_range.mat", "run use/data_imdb_labels_out_of_range.yaml", D,
        "has 9 classes (labels up to 8) but the network gives 3 class scores",
        "use/data_imdb_labels_out_of_range.yaml:12:7"),
    Row("data/imdb_bad_set.mat", "run use/data_imdb_bad_set.yaml", D,
        "images.set has value 7", "use/data_imdb_bad_set.yaml:12:8"),
    # ---- checkpoints (layerspec eval X.npz) ---------------------------------------------
    Row("npz/ckpt_truncated.npz", "eval", C, "(a truncated or damaged zip archive)", None),
    Row("npz/ckpt_pickled_state.npz", "eval", C,
        "array 'opt_s0_0_momentum' holds Python objects (pickles)", None),
    Row("npz/ckpt_python_tag.npz", "eval", C,
        "its embedded spec is invalid: tag '!!python/object/apply:builtins.exec' is not "
        "allowed", None),
    # ---- MatConvNet .mat networks (layerspec port) --------------------------------------
    Row("mat/empty.mat", "port", F, "empty file (0 bytes)", None),
    Row("mat/text_not_mat.mat", "port", F, "not a MATLAB .mat file", None),
    Row("mat/truncated.mat", "port", F, "truncated or corrupt .mat file (703 bytes)", None),
    Row("mat/corrupt_zlib.mat", "port", F, "truncated or corrupt .mat file", None),
    Row("mat/huge_dims.mat", "port", F, "into shape (2147483647,2147483647)", None),
    Row("mat/v73_garbage.mat", "port", F, "cannot read MATLAB v7.3 (HDF5) file", None),
    Row("mat/no_network.mat", "port", F, "no network found", None),
    Row("mat/layers_not_cell.mat", "port", F, "net.layers is not a cell array", None),
    Row("mat/unknown_type.mat", "port", F, "unsupported layer type 'rleu'", None),
    Row("mat/conv_one_weight.mat", "port", F, "needs weights {filters, biases}, got 1 arrays",
        None),
    Row("mat/bias_count.mat", "port", SH, "7 biases, but the filters' 4th dimension is 4", None),
    Row("mat/filters_5d.mat", "port", F, "5 dimensions (3, 3, 1, 4, 2), at most 4 expected",
        None),
    Row("mat/stride_nan.mat", "port", F, "field 'stride' must hold whole numbers, got nan", None),
    Row("mat/pad_text.mat", "port", F, "field 'pad' must be numeric, got a string", None),
    Row("mat/dagnn.mat", "port", F, "this is a DagNN network", None),
    # ---- Matlab .m sources (layerspec port) ---------------------------------------------
    Row("m/eval.m", "port", M, "'eval' is never run: layerspec does not execute Matlab code",
        "m/eval.m:8:1"),
    Row("m/system.m", "port", M, "'system' is never run", "m/system.m:2:1"),
    Row("m/shell_escape.m", "port", M, "unexpected character '!'", "m/shell_escape.m:8:1"),
    Row("m/load.m", "port", M, "'load' is never run", "m/load.m:2:1"),
    Row("m/load_command.m", "port", M, "unexpected 'imdb'", "m/load_command.m:2:6"),
    Row("m/feval.m", "port", M, "'feval' is never run", "m/feval.m:8:1"),
    Row("m/evalin.m", "port", M, "'evalin' is never run", "m/evalin.m:8:5"),
    Row("m/str2func.m", "port", M, "'str2func' is never run", "m/str2func.m:8:5"),
    Row("m/eval_in_initializer.m", "port", M, "'eval' is never run",
        "m/eval_in_initializer.m:4:47"),
    Row("m/for_loop.m", "port", M, "'for' statements cannot be translated",
        "m/for_loop.m:8:1"),
    Row("m/unknown_function.m", "port", M, "calls of other functions are not run",
        "m/unknown_function.m:8:1"),
    Row("m/empty.m", "port", M, "no layers found", "m/empty.m:1:1"),
    Row("m/comments_only.m", "port", M, "no layers found", "m/comments_only.m:1:1"),
    Row("m/no_layers.m", "port", M, "no layers found", "m/no_layers.m:1:1"),
    Row("m/utf16.m", "port", M, "the file is UTF-16 text", "m/utf16.m:1:1"),
    Row("m/nul_byte.m", "port", M, "unknown layer type 're\x00lu'", "m/nul_byte.m:6:28"),
    Row("m/syntax_error.m", "port", M, "expected ',' or ')' but found ';'",
        "m/syntax_error.m:6:42"),
    Row("m/unterminated_string.m", "port", M, "unterminated string",
        "m/unterminated_string.m:6:36"),
    Row("m/deep_parens.m", "port", M, "brackets are nested too deeply", "m/deep_parens.m:2:55"),
    Row("m/deep_cells.m", "port", M, "brackets are nested too deeply", "m/deep_cells.m:2:64"),
    Row("m/long_expression.m", "port", M, "expression is too long",
        "m/long_expression.m:1:1"),
    Row("m/pad_true.m", "port", M, "pad: expected a number, got a boolean",
        "m/pad_true.m:5:18"),
    Row("m/stride_nan.m", "port", M, "stride: expected a finite number, got nan",
        "m/stride_nan.m:5:5"),
    Row("m/stride_inf.m", "port", M, "stride: expected a finite number, got inf",
        "m/stride_inf.m:5:5"),
    Row("m/stride_negative.m", "port", M, "stride: must be >= 1, got -1",
        "m/stride_negative.m:5:5"),
    Row("m/unknown_field.m", "port", M, "unknown field 'strid'", "m/unknown_field.m:5:5"),
    Row("m/duplicate_field.m", "port", M, "field 'stride' is given twice",
        "m/duplicate_field.m:5:18"),
    Row("m/struct_odd_args.m", "port", M, "struct(...) needs name/value pairs",
        "m/struct_odd_args.m:8:21"),
    Row("m/unknown_name.m", "port", M, "unknown name 's'", "m/unknown_name.m:4:18"),
    Row("m/layer_index_zero.m", "port", M, "the layer index must be a whole number >= 1",
        "m/layer_index_zero.m:8:12"),
    Row("m/layer_index_huge.m", "port", M, "net.layers{1000000000}: there are 3 layers so far",
        "m/layer_index_huge.m:8:12"),
    Row("m/rng_negative.m", "port", M, "the seed must be a whole number >= 0 and < 2^32",
        "m/rng_negative.m:2:5"),
    Row("m/rng_huge.m", "port", M, "the seed must be a whole number >= 0 and < 2^32",
        "m/rng_huge.m:2:5"),
    Row("m/input_size_zero.m", "port", M, "input: must be >= 1, got 0",
        "m/input_size_zero.m:8:22"),
    Row("m/trainopts_nan.m", "port", M, "train: learningRate: expected a finite number",
        "m/trainopts_nan.m:8:35"),
]

#: rows also run in a subprocess (python -m layerspec): stderr must be exactly one line
SUBPROCESS = ["spec/python_apply.yaml", "spec/newline_in_type.yaml", "spec/alias_bomb.yaml",
              "data/pickled.npz", "mat/truncated.mat", "m/system.m"]


def driver_of(row: Row) -> str | None:
    return next((w for w in row.command.split() if w.startswith("use/")), None)


def argv_of(row: Row, tmp: Path) -> list[str]:
    verb, *words = row.command.split()
    source = str(CORPUS / (driver_of(row) or row.file))
    options = [w for w in words if w.startswith("--")]
    extra = options + {"check": [],
             "run": ["--out", str(tmp / "out"), "--epochs", "1", "--backend", "numpy"],
             "port": ["-o", str(tmp / "out.yaml")],
             "eval": ["--backend", "numpy"]}[verb]
    return [verb, source, *extra]


def where(err: SpecError) -> str | None:
    if err.file is None or err.line is None:
        return None
    path = Path(err.file).resolve()
    rel = path.relative_to(CORPUS).as_posix() if path.is_relative_to(CORPUS) else str(path)
    return f"{rel}:{err.line}:{err.column}"


@pytest.fixture
def caught(monkeypatch: pytest.MonkeyPatch) -> list[SpecError]:
    """The errors the command line turns into text (it prints ``str(err)``)."""
    seen: list[SpecError] = []
    to_text = SpecError.__str__

    def spy(self: SpecError) -> str:
        seen.append(self)
        return to_text(self)

    monkeypatch.setattr(SpecError, "__str__", spy)
    monkeypatch.delenv("LAYERSPEC_DEBUG", raising=False)
    monkeypatch.delenv("LAYERSPEC_PWNED", raising=False)
    return seen


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_corpus(row: Row, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                caught: list[SpecError]) -> None:
    rc = main(argv_of(row, tmp_path))
    out, err_text = capsys.readouterr()
    assert rc == 2, f"exit {rc}, stderr: {err_text}"
    assert caught, f"no SpecError reached stderr: {err_text}"
    err = caught[-1]
    assert type(err) is row.error, f"{type(err).__name__}: {err}"
    assert row.fragment in err.message, err.message
    assert where(err) == row.at, str(err)
    if row.at is None:  # a binary file: the message or the position names it
        assert Path(row.file).name in f"{err.file} {err.message}", str(err)
    lines = err_text.splitlines()
    assert lines[0] == str(err) and "Traceback" not in err_text
    assert all(line.startswith("note: ") for line in lines[1:]), err_text  # check's fit notes
    assert "\n" not in str(err) and "\x00" not in str(err)
    assert "LAYERSPEC_PWNED" not in os.environ
    assert not (tmp_path / "out.yaml").exists()  # port wrote nothing
    assert not list((tmp_path / "out").glob("net-epoch-*.npz"))  # run trained nothing


def test_corpus_is_complete() -> None:
    """Every corpus file has exactly one row, every driver is used, and there are >= 50."""
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    drivers = {f for f in files if f.startswith("use/")}
    bad = files - drivers - HELPERS
    named = [r.file for r in ROWS]
    assert len(named) == len(set(named))
    assert set(named) == bad, (sorted(bad - set(named)), sorted(set(named) - bad))
    used = {driver_of(r) for r in ROWS} - {None}
    assert used == drivers, sorted(drivers ^ used)
    assert len(bad) >= 50
    kinds = {f.split("/")[0] for f in bad}
    assert kinds == {"spec", "m", "mat", "npz", "data"}


def test_binary_corpus_is_up_to_date() -> None:
    """tools/make_bad_corpus.py writes exactly the committed binary files."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_bad_corpus  # noqa: PLC0415
    finally:
        sys.path.remove(str(REPO / "tools"))
    assert make_bad_corpus.main(["--check"]) == 0


@pytest.mark.parametrize("name", SUBPROCESS)
def test_one_line_on_stderr(name: str, tmp_path: Path) -> None:
    row = next(r for r in ROWS if r.file == name)
    env = {k: v for k, v in os.environ.items() if k != "LAYERSPEC_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "layerspec", *argv_of(row, tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert "Traceback" not in proc.stderr and "error: " in proc.stderr
    assert row.fragment.replace("\n", "\\n") in proc.stderr
    if row.at is not None:
        file, line, col = row.at.rsplit(":", 2)
        assert proc.stderr.startswith(f"{CORPUS / file}:{line}:{col}: error: "), proc.stderr


# --------------------------------------------------------------------------------------------
# no input runs code


#: the hostile inputs and what their message must name
HOSTILE = {
    "spec/python_apply.yaml": "!!python/object/apply:os.system",
    "spec/python_exec.yaml": "!!python/object/apply:builtins.exec",
    "spec/python_name.yaml": "!!python/name:os.system",
    "spec/python_module.yaml": "!!python/module:os",
    "npz/ckpt_python_tag.npz": "!!python/object/apply:builtins.exec",
    "spec/weights_eval.yaml": "'eval'",
    "spec/weights_system.yaml": "'system'",
    "spec/weights_load.yaml": "'load'",
    "m/eval.m": "'eval'",
    "m/system.m": "'system'",
    "m/load.m": "'load'",
    "m/feval.m": "'feval'",
    "m/evalin.m": "'evalin'",
    "m/str2func.m": "'str2func'",
    "m/eval_in_initializer.m": "'eval'",
    "m/shell_escape.m": "shell escapes are never run",
    "npz/weights_pickled.npz": "(pickles), which layerspec never loads: unpickling can run code",
    "data/pickled.npz": "(pickles), which layerspec never loads: unpickling can run code",
    "npz/ckpt_pickled_state.npz": "(pickles), which layerspec never loads",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_no_input_runs_code(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            caught: list[SpecError]) -> None:
    row = next(r for r in ROWS if r.file == name)
    assert main(argv_of(row, tmp_path)) == 2
    message = caught[-1].message
    assert HOSTILE[name] in message
    assert "never" in message or "not allowed" in message
    assert "LAYERSPEC_PWNED" not in os.environ


def test_the_pickles_are_live(tmp_path: Path) -> None:
    """The corpus pickles do run code when a careless reader unpickles them: the test above
    would catch a reader that did."""
    code = ("import numpy as np, os; np.load(os.environ['F'], allow_pickle=True)['y']; "
            "print(os.environ.get('LAYERSPEC_PWNED'))")
    env = {**os.environ, "F": str(CORPUS / "data" / "pickled.npz")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.stdout.strip() == "1", proc.stderr
