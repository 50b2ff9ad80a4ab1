#!/usr/bin/env python3
"""Per-layer time of a layerspec training step (forward, backward, solver update).

Runs the same step as ``tools/bench.py`` (``simplenn`` forward + backward, then
``train.apply_update``) on one of its workloads or any spec file, and prints, per layer, the
median forward and backward milliseconds that ``simplenn`` records in ``res[i].time`` and
``res[i].backwardTime``.

    python tools/profile_layers.py lenet_cifar
    python tools/profile_layers.py seed320 --batch 2 --steps 3
    python tools/profile_layers.py specs/lenet_mnist.yaml --generic   # without Numba kernels
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench import WORKLOADS, LayerspecRunner, Workload  # noqa: E402

from layerspec import simplenn  # noqa: E402
from layerspec.backend import NUMPY_GENERIC  # noqa: E402
from layerspec.shapes import infer  # noqa: E402
from layerspec.train import apply_update  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", help=f"one of {', '.join(WORKLOADS)}, or a spec file")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: the workload's)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--generic", action="store_true",
                    help="NumPy without the compiled CPU kernels")
    args = ap.parse_args(argv)
    wl = WORKLOADS.get(args.workload) or Workload(Path(args.workload).stem, args.workload,
                                                  16, 16, args.steps, 2)
    backend = NUMPY_GENERIC if args.generic else "numpy"
    runner = LayerspecRunner(wl, args.batch or wl.batch_cpu, backend)
    net = runner.net
    fwd: list[list[float]] = [[] for _ in net.layers]
    bwd: list[list[float]] = [[] for _ in net.layers]
    update: list[float] = []
    total: list[float] = []
    for step in range(args.steps + 2):
        t0 = time.perf_counter()
        res = simplenn(net, runner.x, dzdy=1.0, labels=runner.y_host, mode="normal",
                       rng=runner.rng, input_grad=False, conserve_memory=True)
        t1 = time.perf_counter()
        apply_update(net, [r.dzdw for r in res[:-1]], runner.state, runner.opts, runner.lr)
        t2 = time.perf_counter()
        if step >= 2:
            for i, r in enumerate(res[:-1]):
                fwd[i].append(r.time)
                bwd[i].append(r.backwardTime)
            update.append(t2 - t1)
            total.append(t2 - t0)
        del res

    def ms(v: list[float]) -> float:
        return statistics.median(v) * 1e3

    batch = runner.x.shape[0]
    infos = infer(net.layers, [[tuple(w.shape) for w in ws] for ws in net.host_weights()],
                  tuple(net.spec.input))
    print(f"# {wl.name} batch {batch} on {net.backend.describe()}: "
          f"median of {args.steps} steps")
    print("| # | layer | forward ms | backward ms | GFLOP/s forward / backward |")
    print("|---|---|---|---|---|")
    for i, layer in enumerate(net.layers):
        rate = ""
        if layer.type in ("conv", "convt") and min(ms(fwd[i]), ms(bwd[i])) > 0:
            gflop = infos[i].flops * batch / 1e9
            # backward: dF, plus dX except for the first layer (the trainer skips it)
            back = gflop * (2 if i else 1)
            rate = f"{gflop / ms(fwd[i]) * 1e3:.0f} / {back / ms(bwd[i]) * 1e3:.0f}"
        print(f"| {i} | {layer.type} {layer.name} | {ms(fwd[i]):.2f} | {ms(bwd[i]):.2f} | "
              f"{rate} |")
    print(f"| | update | | {ms(update):.2f} | |")
    print(f"| | **step** | {sum(ms(v) for v in fwd):.1f} | {ms(total):.1f} total | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
