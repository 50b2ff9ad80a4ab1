"""The ``lstm`` layer: float64 gradient checks with fixed variational masks, the masks
themselves, shapes and errors, Keras's default initialisation, and agreement with PyTorch's
``nn.LSTM`` (run only when torch is importable; torch is not a dependency)."""

from __future__ import annotations

import numpy as np
import pytest
from test_gradcheck import check_grads, make_net

import layerspec
from layerspec.backend import NUMPY, cupy_status
from layerspec.errors import ShapeError, SpecError
from layerspec.layers import Context, Lstm

R = np.random.default_rng(77)


def lstm_weights(d: int, u: int, scale: float = 0.5, bias: bool = True) -> list[np.ndarray]:
    return [scale * R.standard_normal((d, 4 * u)), scale * R.standard_normal((u, 4 * u)),
            0.3 * R.standard_normal(4 * u) if bias else np.zeros(0)]


def variational_mask(n: int, d: int, u: int, p: float, q: float) -> np.ndarray:
    keep_x = (R.random((n, d)) >= p) / (1 - p)
    keep_h = (R.random((n, u)) >= q) / (1 - q)
    return np.concatenate([keep_x, keep_h], axis=1)


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mode", ["normal", "test"])
def test_lstm_gradients_with_fixed_masks(return_sequences, mode):
    n, t, d, u = 3, 5, 4, 3
    layer = {"type": "lstm", "units": u, "return_sequences": return_sequences,
             "dropout": 0.3, "recurrent_dropout": 0.4}
    net = make_net([layer], [lstm_weights(d, u)], (1, t, d))
    mask = variational_mask(n, d, u, 0.3, 0.4)
    check_grads(net, R.standard_normal((n, 1, t, d)), masks={0: mask}, mode=mode)


def test_lstm_without_bias_gradients():
    net = make_net([{"type": "lstm", "units": 2, "return_sequences": True}],
                   [lstm_weights(3, 2, bias=False)], (1, 4, 3))
    check_grads(net, R.standard_normal((2, 1, 4, 3)))


def test_stacked_lstm_classifier_gradients():
    """The seed article's stack in small: lstm -> dropout -> lstm -> fc -> softmaxloss."""
    n, t, d = 3, 4, 2
    layers = [
        {"type": "lstm", "units": 4, "return_sequences": True},
        {"type": "dropout", "rate": 0.4, "seed": 1001},
        {"type": "lstm", "units": 3, "dropout": 0.25, "recurrent_dropout": 0.25},
        {"type": "fc", "units": 3},
        {"type": "softmaxloss"},
    ]
    weights = [lstm_weights(d, 4), [], lstm_weights(4, 3),
               [R.standard_normal((1, 1, 3, 3)), R.standard_normal(3)], []]
    net = make_net(layers, weights, (1, t, d))
    masks = {1: (R.random((n, 1, t, 4)) >= 0.4) / 0.6, 2: variational_mask(n, 4, 3, .25, .25)}
    check_grads(net, R.standard_normal((n, 1, t, d)), labels=np.array([0, 2, 1]), masks=masks)


def _run(layer: Lstm, x, w, mode="normal", rng=None, aux=None):
    ctx = Context(backend=NUMPY, mode=mode, rng=rng)
    return layer.forward(x, w, ctx, aux)


def test_masks_are_variational_and_kept_for_backward():
    n, t, d, u = 4, 6, 3, 5
    layer = Lstm(name="l", units=u, return_sequences=True, dropout=0.5, recurrent_dropout=0.5)
    w = [np.asarray(a, np.float32) for a in lstm_weights(d, u)]
    x = R.standard_normal((n, 1, t, d)).astype(np.float32)
    y, aux = _run(layer, x, w, rng=np.random.default_rng(0))
    mask = aux[0]
    assert mask.shape == (n, d + u) and mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) <= {0.0, 2.0}
    # one input mask per sequence, reused at every step: a channel dropped for a sequence
    # has no effect on that sequence's output at any step
    n0, c0 = np.argwhere(mask[:, :d] == 0)[0]
    x2 = x.copy()
    x2[n0, 0, :, c0] += 10.0
    y2, _ = _run(layer, x2, w, aux=mask)
    np.testing.assert_array_equal(y2[n0], y[n0])
    # replaying the kept mask gives the same output; another draw differs
    np.testing.assert_array_equal(_run(layer, x, w, aux=mask)[0], y)
    y3, _ = _run(layer, x, w, rng=np.random.default_rng(1))
    assert not np.array_equal(y3, y)


def test_test_mode_is_deterministic_and_ignores_dropout():
    n, t, d, u = 2, 5, 3, 4
    w = [np.asarray(a, np.float32) for a in lstm_weights(d, u)]
    x = R.standard_normal((n, 1, t, d)).astype(np.float32)
    with_dropout = Lstm(name="a", units=u, dropout=0.5, recurrent_dropout=0.5)
    plain = Lstm(name="b", units=u)
    ya, aux = _run(with_dropout, x, w, mode="test")
    yb, _ = _run(plain, x, w, mode="normal")  # no rates: no mask, no generator needed
    np.testing.assert_array_equal(ya, yb)
    assert aux[0] is None


def test_shapes_and_errors():
    layer = Lstm(name="l", units=8, return_sequences=True)
    ws = [(3, 32), (8, 32), (32,)]
    assert layer.output_shape((1, 10, 3), ws) == (1, 10, 8)
    assert Lstm(name="l", units=8).output_shape((1, 10, 3), ws) == (1, 1, 8)
    with pytest.raises(ShapeError, match=r"write the spec's input as \[1, T, D\]"):
        layer.output_shape((2, 10, 3), ws)
    with pytest.raises(ShapeError, match="W \\[D 4U\\] = 3x32"):
        layer.output_shape((1, 10, 3), [(32, 3), (8, 32), (32,)])
    with pytest.raises(ShapeError, match="4U = 32"):
        layer.output_shape((1, 10, 3), [(3, 32), (8, 32), (31,)])
    # a weights file may hold the matrices flat (C order)
    assert layer.output_shape((1, 10, 3), [(96,), (256,), (32,)]) == (1, 10, 8)


def test_spec_fields_and_default_init():
    spec = {"name": "s", "input": [1, 7, 3], "layers": [
        {"type": "lstm", "units": 16, "return_sequences": True, "dropout": 0.25,
         "recurrent_dropout": 0.25}]}
    net = layerspec.load(spec, seed=3)
    layer = net.layers[0]
    assert (layer.units, layer.return_sequences, layer.dropout) == (16, True, 0.25)
    w, r, b = net.weights[0]
    assert (w.shape, r.shape, b.shape) == ((3, 64), (16, 64), (64,))
    assert w.dtype == np.float32
    lim = np.sqrt(6 / (3 + 64))
    assert np.abs(w).max() <= lim and np.abs(w).max() > 0.8 * lim       # Glorot uniform
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-5)          # orthogonal rows
    np.testing.assert_array_equal(b, np.r_[np.zeros(16), np.ones(16), np.zeros(32)])
    again = layerspec.load(spec, seed=3)
    np.testing.assert_array_equal(again.weights[0][1], r)
    # the canonical form round-trips
    assert layerspec.load(net.spec.to_dict(), seed=3).spec.layers == net.spec.layers


def test_initializers_in_the_spec():
    spec = {"name": "s", "input": [1, 4, 2], "layers": [
        {"type": "lstm", "units": 3,
         "weights": ["0.1*ones(2,12)", "zeros(3,12)", "[zeros(1,3) ones(1,3) zeros(1,6)]"]}]}
    net = layerspec.load(spec)
    assert [a.shape for a in net.weights[0]] == [(2, 12), (3, 12), (12,)]
    np.testing.assert_array_equal(net.weights[0][2][3:6], 1)


@pytest.mark.parametrize("bad, message", [
    ({"units": 0}, "units: must be >= 1"),
    ({"units": 4, "dropout": 1.0}, "dropout: must be < 1"),
    ({"units": 4, "return_sequences": "yes please"}, "expected true or false"),
    ({"units": 4, "recurrent_dropuot": 0.1}, "did you mean 'recurrent_dropout'"),
    ({}, "missing required field 'units'"),
])
def test_spec_errors(bad, message):
    with pytest.raises(SpecError, match=message):
        layerspec.load({"input": [1, 4, 2], "layers": [{"type": "lstm", **bad}]})


def test_default_init_needs_the_input_size():
    with pytest.raises(SpecError, match="sizes its default weights from its input"):
        layerspec.load({"layers": [{"type": "lstm", "units": 4}]})


def test_agrees_with_pytorch_lstm():
    torch = pytest.importorskip("torch")
    n, t, d, u = 4, 7, 5, 6
    rng = np.random.default_rng(5)
    m = torch.nn.LSTM(d, u, batch_first=True)
    for p in m.parameters():
        torch.nn.init.uniform_(p, -0.6, 0.6, generator=torch.Generator().manual_seed(0))
    w_ih, w_hh = m.weight_ih_l0.detach().numpy(), m.weight_hh_l0.detach().numpy()
    b = (m.bias_ih_l0 + m.bias_hh_l0).detach().numpy()
    weights = [w_ih.T.copy(), w_hh.T.copy(), b]
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    for return_sequences in (True, False):
        spec = {"input": [1, t, d], "layers": [
            {"type": "lstm", "units": u, "return_sequences": return_sequences}]}
        net = layerspec.load(spec, weights=[weights])
        out_shape = (n, t, u) if return_sequences else (n, u)
        proj = rng.standard_normal(out_shape).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        m.zero_grad()
        seq, (h_n, _) = m(xt)
        top = seq if return_sequences else h_n[0]
        (top * torch.tensor(proj)).sum().backward()
        res = layerspec.simplenn(net, x.reshape(n, 1, t, d),
                                 dzdy=proj.reshape(n, 1, -1, u), mode="normal")
        np.testing.assert_allclose(res[1].x.reshape(out_shape), top.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res[0].dzdx.reshape(n, t, d), xt.grad.numpy(),
                                   rtol=1e-4, atol=1e-5)
        dw, dr, db = (g.reshape(s) for g, s in zip(res[0].dzdw, [(d, 4 * u), (u, 4 * u),
                                                                  (4 * u,)], strict=True))
        np.testing.assert_allclose(dw, m.weight_ih_l0.grad.numpy().T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dr, m.weight_hh_l0.grad.numpy().T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(db, m.bias_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-5)


# ----- the article's Dropout(0.4, seed=1001) ---------------------------------------------------

def _seeded_net(seed=1001):
    spec = {"input": [1, 6, 4], "layers": [
        {"type": "dropout", "name": "d1", "rate": 0.4, "seed": seed},
        {"type": "dropout", "name": "d2", "rate": 0.4, "seed": seed},
        {"type": "dropout", "name": "free", "rate": 0.4}]}
    return layerspec.load(spec)


def _masks(net, rng, step):
    x = np.ones((3, 1, 6, 4), np.float32)
    res = layerspec.simplenn(net, x, rng=rng, step=step)
    return [r.aux for r in res[1:]]


def test_seeded_dropout_masks_are_reproducible_and_differ_between_steps():
    net = _seeded_net()
    a = _masks(net, np.random.default_rng(0), (1, 1))
    b = _masks(net, np.random.default_rng(99), (1, 1))     # another run seed
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[2], b[2])                   # the unseeded layer follows the run
    assert not np.array_equal(a[0], a[1])                   # same seed, other name
    c = _masks(net, np.random.default_rng(0), (1, 2))       # next batch
    assert not np.array_equal(a[0], c[0])
    d = _masks(net, np.random.default_rng(0), (2, 1))       # next epoch
    assert not np.array_equal(a[0], d[0])
    assert set(np.unique(a[0]).tolist()) == {0.0, np.float32(1 / 0.6)}
    # exactly as documented: default_rng([seed, crc32(name), epoch, batch]), U[0,1) float32
    import zlib  # noqa: PLC0415

    u = np.random.default_rng([1001, zlib.crc32(b"d1"), 1, 1]).random((3, 1, 6, 4), np.float32)
    np.testing.assert_array_equal(a[0], (u >= np.float32(0.4)) * np.float32(1 / 0.6))
    other = _masks(_seeded_net(7), np.random.default_rng(0), (1, 1))
    assert not np.array_equal(a[0], other[0])


def test_seeded_dropout_without_a_step_uses_the_run_generator():
    net = _seeded_net()
    a = _masks(net, np.random.default_rng(5), None)
    b = _masks(net, np.random.default_rng(5), None)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], _masks(net, np.random.default_rng(6), None)[0])


def test_trainer_passes_the_step_to_seeded_dropout():
    x = R.standard_normal((8, 1, 1, 4)).astype(np.float32)
    y = np.arange(8) % 2
    order = [list(range(8))] * 2

    def objective(seed_field, random_seed):
        spec = {"input": [1, 1, 4], "layers": [
            {"type": "dropout", "rate": 0.5, **seed_field},
            {"type": "fc", "units": 2}, {"type": "softmaxloss"}]}
        net = layerspec.load(spec, seed=0)
        stats = layerspec.train(net, (x, y), order=order, batchSize=4, randomSeed=random_seed)
        return [s["train"]["objective"] for s in stats]

    # seeded masks do not depend on cnn_train's randomSeed, unseeded ones do
    assert objective({"seed": 3}, 0) == objective({"seed": 3}, 1)
    assert objective({}, 0) != objective({}, 1)


def test_dropout_seed_field():
    net = _seeded_net()
    assert net.layers[0].seed == 1001 and net.layers[2].seed is None
    assert layerspec.load(net.spec.to_dict()).spec.layers == net.spec.layers
    with pytest.raises(SpecError, match="seed: must be >= 0"):
        _seeded_net(-1)


GPU_OK, GPU_WHY = cupy_status()


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_OK, reason=GPU_WHY)
@pytest.mark.parametrize("mode", ["normal", "test"])
def test_numpy_and_cupy_agree(mode):
    """The article's stack in small; masks are drawn on the host, so both backends see the
    same ones."""
    spec = {"input": [1, 9, 3], "layers": [
        {"type": "lstm", "units": 16, "return_sequences": True},
        {"type": "dropout", "rate": 0.4, "seed": 1001},
        {"type": "lstm", "units": 8, "return_sequences": True, "dropout": 0.25,
         "recurrent_dropout": 0.25},
        {"type": "dropout", "rate": 0.4},
        {"type": "lstm", "units": 4, "dropout": 0.25, "recurrent_dropout": 0.25},
        {"type": "fc", "units": 3}, {"type": "softmaxloss"}]}
    cpu = layerspec.load(spec, seed=2)
    gpu = cpu.to("cupy")
    x = R.standard_normal((5, 1, 9, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    a = layerspec.simplenn(cpu, x, dzdy=1.0, labels=y, mode=mode,
                           rng=np.random.default_rng(0), step=(1, 1))
    b = layerspec.simplenn(gpu, x, dzdy=1.0, labels=y, mode=mode,
                           rng=np.random.default_rng(0), step=(1, 1))
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose(gpu.backend.to_numpy(rb.x), ra.x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gpu.backend.to_numpy(rb.dzdx), ra.dzdx, rtol=1e-4,
                                   atol=1e-5)
        for ga, gb in zip(ra.dzdw, rb.dzdw, strict=True):
            np.testing.assert_allclose(gpu.backend.to_numpy(gb), ga, rtol=1e-4, atol=1e-5)
