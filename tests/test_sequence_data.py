"""Sequence data: ``.npz`` files with ``x`` of shape (N, T, D), the embedded
``dataset: sequences`` task (deterministic, no shortcut through the last step or the class
means), and a small LSTM learning it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import layerspec
from layerspec.data import load_data, sequences
from layerspec.errors import DataError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_sequences_are_deterministic_and_balanced():
    a = sequences(16, 3, 4, 200, 40, seed=2)
    b = sequences(16, 3, 4, 200, 40, seed=2)
    assert a.x_train.shape == (200, 1, 16, 3) and a.x_train.dtype == np.float32
    assert a.x_test.shape == (40, 1, 16, 3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(np.bincount(a.y_train), [50] * 4)
    assert a.classes == ("1.50 cycles", "3.10 cycles", "4.70 cycles", "6.30 cycles")
    # the test set does not depend on the number of training sequences
    np.testing.assert_array_equal(sequences(16, 3, 4, 10, 40, seed=2).x_test, a.x_test)
    assert not np.array_equal(sequences(16, 3, 4, 200, 40, seed=3).x_train, a.x_train)


def _linear_accuracy(f_train, y_train, f_test, y_test, k):
    a = np.c_[f_train, np.ones(len(f_train))]
    w = np.linalg.lstsq(a, np.eye(k)[y_train], rcond=None)[0]
    return float((np.argmax(np.c_[f_test, np.ones(len(f_test))] @ w, 1) == y_test).mean())


def test_the_task_needs_the_whole_sequence():
    t, d, k = 32, 3, 4
    ds = sequences(t, d, k, 1200, 400, seed=0)
    xtr, xte = ds.x_train.reshape(-1, t, d), ds.x_test.reshape(-1, t, d)
    # the last step alone, and any linear function of the whole sequence: near chance
    last = _linear_accuracy(xtr[:, -1], ds.y_train, xte[:, -1], ds.y_test, k)
    whole = _linear_accuracy(xtr.reshape(len(xtr), -1), ds.y_train, xte.reshape(len(xte), -1),
                             ds.y_test, k)
    assert last < 0.32 and whole < 0.4
    # how the signal evolves over time (its spectrum) tells the class
    spec_tr = (np.abs(np.fft.rfft(xtr, axis=1)) ** 2).mean(axis=2)
    spec_te = (np.abs(np.fft.rfft(xte, axis=1)) ** 2).mean(axis=2)
    assert _linear_accuracy(spec_tr, ds.y_train, spec_te, ds.y_test, k) > 0.9


def test_load_sequences_dataset():
    ds = load_data({"dataset": "sequences", "classes": 3, "train": 30, "test": 9},
                   input_shape=(1, 12, 2), base_dir=Path("."), seed=0)
    assert ds.image_shape == (1, 12, 2) and len(ds.y_train) == 30 and ds.num_classes == 3
    with pytest.raises(DataError, match=r"input as \[1, T, D\]"):
        load_data({"dataset": "sequences"}, input_shape=(12, 2, 1), base_dir=Path("."))
    with pytest.raises(DataError, match="does not apply"):
        load_data({"dataset": "sequences", "full": True}, input_shape=(1, 12, 2),
                  base_dir=Path("."))


def test_npz_of_sequences(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 7, 3))
    x_test = rng.standard_normal((4, 7, 3))
    path = tmp_path / "seq.npz"
    np.savez(path, x=x, y=np.arange(10) % 2, x_test=x_test, y_test=np.arange(4) % 2)
    ds = load_data({"path": "seq.npz"}, input_shape=(1, 7, 3), base_dir=tmp_path)
    assert ds.x_train.shape == (10, 1, 7, 3) and ds.x_test.shape == (4, 1, 7, 3)
    np.testing.assert_array_equal(ds.x_train[:, 0], x.astype(np.float32))
    # with an image input size, a 3-D x stays N grayscale images
    images = load_data({"path": "seq.npz"}, input_shape=(7, 3, 1), base_dir=tmp_path)
    assert images.x_train.shape == (10, 7, 3, 1)
    with pytest.raises(DataError, match="but the spec's input is 1x5x3"):
        load_data({"path": "seq.npz"}, input_shape=(1, 5, 3), base_dir=tmp_path)


def test_small_lstm_learns_the_sequences():
    spec = {"name": "tiny", "input": [1, 16, 2], "layers": [
        {"type": "lstm", "units": 12, "return_sequences": True},
        {"type": "dropout", "rate": 0.2, "seed": 1001},
        {"type": "lstm", "units": 8, "dropout": 0.1, "recurrent_dropout": 0.1},
        {"type": "fc", "units": 2}, {"type": "softmaxloss"}]}
    net = layerspec.load(spec, seed=0)
    ds = load_data({"dataset": "sequences", "classes": 2, "train": 400, "test": 200},
                   input_shape=(1, 16, 2), base_dir=Path("."), seed=0)
    stats = layerspec.train(net, (ds.x_train, ds.y_train), val=(ds.x_test, ds.y_test),
                            numEpochs=6, batchSize=20, solver="adam", learningRate=0.01,
                            weightDecay=0.0)
    assert stats[-1]["train"]["objective"] < 0.7 * stats[0]["train"]["objective"]
    assert stats[-1]["val"]["top1err"] < 0.2


def test_seed_lstm_spec_is_the_article_stack():
    net = layerspec.load(SPECS / "seed_lstm.yaml")
    kinds = [(layer.type, getattr(layer, "units", None)) for layer in net.layers]
    assert kinds == [("lstm", 128), ("dropout", None), ("lstm", 64), ("dropout", None),
                     ("lstm", 32), ("fc", 4), ("softmaxloss", None)]
    lstm1, drop1, lstm2, drop2, lstm3 = net.layers[:5]
    assert lstm1.return_sequences and lstm2.return_sequences and not lstm3.return_sequences
    assert (drop1.rate, drop1.seed, drop2.rate, drop2.seed) == (0.4, 1001, 0.4, 1001)
    assert (lstm2.dropout, lstm2.recurrent_dropout) == (0.25, 0.25)
    assert (lstm3.dropout, lstm3.recurrent_dropout) == (0.25, 0.25)
    assert net.info()[-2].out_shape == (1, 1, 4)
    ds = load_data(net.spec.data, input_shape=net.spec.input, base_dir=SPECS, seed=0)
    assert ds.image_shape == (1, 32, 3) and ds.num_classes == 4
