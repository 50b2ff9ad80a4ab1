"""Replay two real cnn_train SGD steps (tests/data/matconvnet/sgd_two_steps.mat) and check the
weights and momentum after each step, and the trainer's other rules."""

from __future__ import annotations

import numpy as np
import pytest

import layerspec
from layerspec.matconvnet import labels_from_matlab, layer_weights, raw_spec_from_net, to_nhwc
from layerspec.train import TrainOptions, multiclass_errors
from tests.refcases import compare, load_mat, replay_setup


@pytest.fixture(scope="module")
def ref():
    return load_mat("sgd_two_steps")


def weights_of(net_struct):
    spec = raw_spec_from_net(net_struct)
    return [layer.get("weights", []) for layer in spec["layers"]], spec


def test_sgd_two_steps_replay(ref):
    net, trainer, x, y, order = replay_setup(ref)
    for step in (1, 2):
        trainer.train_epoch(step, x, y, order=order[step - 1])
        after, _ = weights_of(ref[f"net_after{step}"])
        for i, layer in enumerate(net.layers):
            if not layer.weight_names:
                continue
            mom = layer_weights(layer.type, ref[f"momentum_after{step}"][i])
            for j in range(2):
                compare(trainer.state[i][j]["m"], mom[j], f"step{step} momentum[{i}][{j}]",
                        rtol=1e-5, atol_scale=1e-5)
                compare(net.weights[i][j], after[i][j], f"step{step} weights[{i}][{j}]",
                        rtol=1e-6, atol_scale=1e-6)


def test_public_train_replays_with_order(ref):
    _, spec = weights_of(ref["net_before"])
    net = layerspec.load(spec)
    x = to_nhwc(ref["images"])
    y = labels_from_matlab(ref["image_labels"], x.shape[0])
    order = [np.asarray(o, dtype=int).reshape(-1) - 1 for o in ref["batch_order"]]
    stats = layerspec.train(net, (x, y), order=order, batchSize=4, learningRate=0.001,
                            weightDecay=0.0005, momentum=0.9)
    assert len(stats) == 2
    assert stats[0]["train"]["objective"] == pytest.approx(float(ref["step1_loss"].item()),
                                                           rel=1e-5)
    after, _ = weights_of(ref["net_after2"])
    compare(net.weights[6][0], after[6][0], "final fc filters", rtol=1e-6, atol_scale=1e-6)


def test_learning_rate_schedule_last_entry_repeats():
    opts = TrainOptions(learningRate=(0.1, 0.01))
    assert [opts.lr(e) for e in (1, 2, 3, 10)] == [0.1, 0.01, 0.01, 0.01]


def test_multiclass_errors_stable_ties():
    scores = np.array([[[[1.0, 1.0, 0.0]]], [[[0.0, 2.0, 1.0]]]], dtype=np.float32)
    # image 0: tie between classes 0 and 1 -> sorted order 0, 1: label 1 is second (error)
    top1, top5 = multiclass_errors(np, scores, np.array([1, 1]))
    assert (top1, top5) == (1.0, 0.0)
    top1, _ = multiclass_errors(np, scores, np.array([0, -1]))
    assert top1 == 0.0


@pytest.mark.parametrize("solver", ["adam", "adagrad", "adadelta", "rmsprop", "sgd"])
def test_solvers_reduce_the_loss(solver):
    rng = np.random.default_rng(0)
    spec = {"input": [4, 4, 2], "layers": [
        {"type": "conv", "weights": ["0.1*randn(4,4,2,3,'single')", "zeros(1,3,'single')"]},
        {"type": "softmaxloss"}]}
    x = rng.standard_normal((30, 4, 4, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    net = layerspec.load(spec, seed=1)
    lr = {"adadelta": 1.0, "sgd": 0.05}.get(solver, 0.01)
    stats = layerspec.train(net, (x, y), numEpochs=15, batchSize=10, learningRate=lr,
                            solver=solver, weightDecay=0.0)
    assert stats[-1]["train"]["objective"] < stats[0]["train"]["objective"]


def test_unknown_option_is_a_spec_error():
    net = layerspec.load({"layers": [{"type": "relu"}]})
    with pytest.raises(layerspec.SpecError, match="did you mean 'batchSize'"):
        TrainOptions.resolve(net, batchsize=3)
