"""Spec files: exact error messages with file:line:column, aliases, defaults, tidy idempotence."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import layerspec
from layerspec.spec import Spec, spec_from_source, tidy

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "net.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def error_of(tmp_path: Path, text: str) -> layerspec.SpecError:
    p = write(tmp_path, text)
    with pytest.raises(layerspec.SpecError) as info:
        layerspec.load(p)
    return info.value


BASE = """
    name: t
    input: [8, 8, 1]
    layers:
      - type: conv
        weights: ["0.1*randn(3,3,1,4,'single')", "zeros(1,4,'single')"]
      - {type: relu}
      - {type: pool, method: max, pool: 2, strid: 2}
      - {type: softmaxloss}
"""


def test_unknown_field_did_you_mean(tmp_path):
    err = error_of(tmp_path, BASE)
    assert str(err) == (f"{tmp_path / 'net.yaml'}:7:40: error: pool: unknown field 'strid' "
                        "(did you mean 'stride'?)")
    assert (err.line, err.column) == (7, 40)


def test_unknown_layer_type(tmp_path):
    err = error_of(tmp_path, BASE.replace("{type: relu}", "{type: rleu}"))
    assert err.message == "layer 2: unknown layer type 'rleu' (did you mean 'relu'?)"
    assert (err.line, err.column) == (6, 12)


def test_every_simplenn_type_is_known():
    from layerspec.layers import PLANNED_TYPES
    from layerspec.matconvnet import SIMPLENN_TYPES

    assert SIMPLENN_TYPES <= layerspec.LAYER_TYPES
    assert not PLANNED_TYPES


def test_duplicate_key(tmp_path):
    err = error_of(tmp_path, BASE.replace("strid: 2}", "stride: 2, stride: 1}"))
    assert "duplicate key 'stride'" in err.message
    assert err.line == 7


def test_boolean_surprise(tmp_path):
    err = error_of(tmp_path, BASE.replace("strid: 2", "stride: 2, pad: yes"))
    assert err.message.startswith("pool: pad: expected a number, got a boolean ('yes'")
    assert (err.line, err.column) == (7, 56)


def test_two_element_pad_is_refused(tmp_path):
    err = error_of(tmp_path, BASE.replace("strid: 2", "stride: 2, pad: [1, 1]"))
    assert "pool: pad: expected 1 or 4 numbers, got 2" in err.message


def test_negative_stride(tmp_path):
    err = error_of(tmp_path, BASE.replace("strid: 2", "stride: -1"))
    assert err.message == "pool: stride: must be >= 1, got -1"
    assert (err.line, err.column) == (7, 48)


def test_fraction_alias_and_conflict(tmp_path):
    ok = BASE.replace("strid: 2}", "stride: 2}\n  - {type: dropout, fraction: 0.3}")
    ok = ok.replace("  - {type: dropout", "      - {type: dropout")
    # dropout before the loss
    lines = ok.splitlines()
    lines.insert(lines.index("      - {type: softmaxloss}"), lines.pop(-1))
    net = layerspec.load(write(tmp_path, "\n".join(lines)))
    drop = [layer for layer in net.layers if layer.type == "dropout"][0]
    assert drop.rate == 0.3
    bad = "\n".join(lines).replace("fraction: 0.3", "fraction: 0.3, rate: 0.5")
    err = error_of(tmp_path, bad)
    assert "'rate' (0.5) and 'fraction' (0.3) are both given and differ" in err.message
    same = "\n".join(lines).replace("fraction: 0.3", "fraction: 0.5, rate: 0.5")
    assert layerspec.load(write(tmp_path, same, "same.yaml")).layers[3].rate == 0.5


def test_filters_biases_legacy_alias():
    spec, _ = tidy({"layers": [{"type": "conv", "filters": "ones(1,1,2,3)", "biases": "[]"},
                               {"type": "softmaxloss"}], "input": [4, 4, 2]})
    assert [w.expr for w in spec.layers[0].weights] == ["ones(1,1,2,3)", "[]"]
    net = layerspec.load(spec)
    assert net.weights[0][0].shape == (1, 1, 2, 3) and net.weights[0][1].shape == (0,)


def test_missing_weights_message(tmp_path):
    err = error_of(tmp_path, BASE.replace(
        """        weights: ["0.1*randn(3,3,1,4,'single')", "zeros(1,4,'single')"]\n""", ""))
    assert err.message.startswith("conv: missing 'weights': give initializers")
    assert (err.line, err.column) == (4, 5)


def test_expression_error_points_into_the_string(tmp_path):
    err = error_of(tmp_path, BASE.replace("0.1*randn", "0.1*randm").replace("strid", "stride"))
    assert "randm" in err.message
    assert err.line == 5
    assert err.column == 20  # the 'randm' inside the quoted expression


def test_weight_shape_checked_against_input(tmp_path):
    err = error_of(tmp_path, BASE.replace("randn(3,3,1,4", "randn(3,3,2,4").replace("strid",
                                                                                  "stride"))
    assert isinstance(err, layerspec.SpecError)
    assert "the input has 1 channels but the filters are 3x3x2x4" in err.message
    assert (err.line, err.column) == (4, 5)


def test_loss_must_be_last(tmp_path):
    text = BASE.replace("strid", "stride").replace(
        "      - {type: relu}", "      - {type: softmaxloss}\n      - {type: relu}")
    err = error_of(tmp_path, text)
    assert "must be the last layer" in err.message


def test_unknown_top_level_key(tmp_path):
    err = error_of(tmp_path, "naem: x\nlayers: [{type: relu}]\n")
    assert str(err).endswith("error: unknown top-level key 'naem' (did you mean 'name'?)")
    assert (err.line, err.column) == (1, 1)


def test_unknown_train_option(tmp_path):
    err = error_of(tmp_path, BASE.replace("strid", "stride") + "    train: {batchsize: 10}\n")
    assert "train: unknown cnn_train option 'batchsize' (did you mean 'batchSize'?)" in err.message


def test_not_a_mapping(tmp_path):
    err = error_of(tmp_path, "- a\n- b\n")
    assert "a spec is a mapping" in err.message


def test_defaults_and_names():
    spec, _ = tidy({"layers": [{"type": "pool", "pool": 3}, {"type": "relu"},
                               {"type": "dropout"}, {"type": "conv", "weights": ["1", "[]"]}]})
    pool, relu, drop, conv = spec.layers
    assert (pool.method, pool.stride, pool.pad) == ("max", (1, 1), (0, 0, 0, 0))
    assert pool.pool == (3, 3)
    assert relu.leak == 0.0 and drop.rate == 0.5 and drop.scaling == "inverted"
    assert (conv.stride, conv.pad, conv.dilate) == ((1, 1), (0, 0, 0, 0), (1, 1))
    assert [layer.name for layer in spec.layers] == ["layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_tidy_twice_equals_once(path):
    spec, _ = spec_from_source(path)
    again, _ = tidy(spec.to_dict())
    assert isinstance(again, Spec)
    assert again == spec
    assert again.digest() == spec.digest()
    thrice, _ = tidy(again.to_dict())
    assert thrice.to_dict() == spec.to_dict()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_loads_and_fits(path):
    net = layerspec.load(path)
    infos = net.info()
    assert infos[-1].layer.is_loss


def test_seed_reproducible_weights():
    a = layerspec.load(SPECS[0], seed=3).host_weights()
    b = layerspec.load(SPECS[0], seed=3).host_weights()
    c = layerspec.load(SPECS[0], seed=4).host_weights()
    assert all(np.array_equal(x, y) for wa, wb in zip(a, b, strict=True)
               for x, y in zip(wa, wb, strict=True))
    assert not np.array_equal(a[0][0], c[0][0])


def test_schedule_expression():
    spec, _ = spec_from_source(Path(__file__).parent.parent / "specs" / "lenet_cifar.yaml")
    lr = spec.train["learningRate"]
    assert len(lr) == 45 and lr[0] == 0.05 and lr[30] == 0.005 and lr[-1] == 0.0005


def test_custom_type_is_refused_with_reason(tmp_path):
    err = error_of(tmp_path, BASE.replace("{type: relu}", "{type: custom}"))
    assert "'custom' layers run Matlab function handles, which layerspec never executes" \
        in err.message
    assert (err.line, err.column) == (6, 12)
