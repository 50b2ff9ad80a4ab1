#!/usr/bin/env python3
"""Benchmark layerspec against PyTorch on the reference workloads (BRIEF §7).

For each workload (lenet_mnist b100, lenet_cifar b100, seed320 b2 on the CPU / b32 on the GPU)
this times, in one process and interleaved round by round (every other round in reverse order):

* layerspec's training step: ``simplenn`` forward + backward, then ``train.apply_update``
  (SGD with momentum and weight decay, the spec's per-layer learning-rate multipliers);
* layerspec's forward pass (mode ``test``);
* the same network in PyTorch, default NCHW and ``channels_last``: ``F.conv2d`` (asymmetric
  padding through ``F.pad``), ``max_pool2d`` with -inf padding, ``avg_pool2d`` with
  ``count_include_pad=False`` (MatConvNet's in-image divisor), inverted dropout, softmax log-loss
  summed over positions and divided by N, and ``torch.optim.SGD`` with the same momentum,
  weight decay and per-layer rates. Forward-only runs use ``eval()`` and ``inference_mode``.

It prints the median ms over all timed steps of all rounds (>= 3 rounds after warm-up), the
ratios layerspec/PyTorch against both layouts, and the peak resident memory (ru_maxrss) of a
training run of each side, measured in a separate process per workload and side so that one
side's allocations do not count for the other. On ``--backend cupy`` the peak is the device
memory in use (CuPy's pool / ``torch.cuda.max_memory_allocated``).

PyTorch is optional (benchmark only, never a layerspec dependency): without it only the
layerspec columns are filled. Threads: PyTorch gets as many as NumPy's BLAS uses (threadpoolctl),
or ``--threads N`` for both (and for layerspec's own host threads).

    python tools/bench.py                                  # numpy, all three workloads
    python tools/bench.py --workloads lenet_cifar --repeats 5
    python tools/bench.py --backend cupy [--tf32]           # GPU, seed320 at batch 32
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# layerspec before NumPy, as in the CLI: it sets OPENBLAS_THREAD_TIMEOUT, which OpenBLAS reads
# once when NumPy loads it (see layerspec.hostthreads)
import layerspec  # noqa: E402, I001
import numpy as np  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    spec: str
    batch_cpu: int
    batch_gpu: int
    steps: int        # timed steps per round and side
    warmup: int


WORKLOADS = {
    "lenet_mnist": Workload("lenet_mnist", "specs/lenet_mnist.yaml", 100, 100, 10, 3),
    "lenet_cifar": Workload("lenet_cifar", "specs/lenet_cifar.yaml", 100, 100, 10, 3),
    "seed320": Workload("seed320", "specs/seed_cnn.yaml", 2, 32, 2, 1),
}


def blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415
    except ImportError:
        return None
    counts = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
    return max(counts) if counts else None


def blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')} "
                     f"{d.get('num_threads')} threads"
                     for d in threadpool_info() if d.get("user_api") == "blas") or "unknown"


def limit_threads(n: int | None) -> Any:
    if n is None:
        return None
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:
        return None
    return threadpool_limits(n, user_api="blas")


def have_torch() -> bool:
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# layerspec side


class LayerspecRunner:
    def __init__(self, wl: Workload, batch: int, backend: str, seed: int = 0) -> None:
        from layerspec.train import TrainOptions, init_solver_state  # noqa: PLC0415

        self.net = layerspec.load(str(ROOT / wl.spec), backend=backend, seed=seed)
        self.be = self.net.backend
        self.opts = TrainOptions.resolve(self.net)
        self.state = init_solver_state(self.net, self.opts.solver)
        self.lr = self.opts.lr(1)
        h, w, c = self.net.spec.input
        rng = np.random.default_rng(seed)
        self.x_host = rng.standard_normal((batch, h, w, c)).astype(np.float32)
        n_classes = self.net.weights[-2][0].shape[-1]
        self.y_host = rng.integers(0, n_classes, batch)
        self.x = self.be.asarray(self.x_host)
        self.y = self.be.asarray(self.y_host)
        self.rng = np.random.default_rng([seed, 1])

    def train_step(self) -> None:
        from layerspec import simplenn  # noqa: PLC0415
        from layerspec.train import apply_update  # noqa: PLC0415

        # host labels, as the trainer passes them: the loss checks them without a device wait
        res = simplenn(self.net, self.x, dzdy=1.0, labels=self.y_host, mode="normal",
                       rng=self.rng, input_grad=False,  # as the trainer (and PyTorch) do
                       conserve_memory=True)
        apply_update(self.net, [r.dzdw for r in res[:-1]], self.state, self.opts, self.lr)
        del res
        self.be.synchronize()

    def forward(self) -> None:
        from layerspec import simplenn  # noqa: PLC0415

        res = simplenn(self.net, self.x, labels=self.y_host, mode="test")
        del res
        self.be.synchronize()

    def device_peak(self) -> float | None:
        if self.be.name != "cupy":
            return None
        return self.be.xp.get_default_memory_pool().total_bytes() / 2**20


# ------------------------------------------------------------------------------------------
# PyTorch side


def _torch_model(net: Any, device: str) -> tuple[Any, list[dict[str, Any]]]:
    """A torch.nn.Module doing what ``net`` does, and SGD parameter groups with the spec's
    per-layer learning-rate and weight-decay multipliers."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: N812, PLC0415

    ops: list[Any] = []
    params = torch.nn.ParameterList()
    groups: list[dict[str, Any]] = []
    h, w, c = net.spec.input
    for layer, ws in zip(net.layers, net.host_weights(), strict=True):
        t = layer.type
        if t == "conv":
            f, b = ws
            fh, fw, fc, k = f.shape
            wt = torch.nn.Parameter(torch.tensor(np.ascontiguousarray(f.transpose(3, 2, 0, 1)),
                                                 device=device))
            bt = torch.nn.Parameter(torch.tensor(b, device=device)) if b.size else None
            pt, pb, pl, pr = layer.pad
            sym = pt == pb and pl == pr
            groups_n = c // fc
            lrs = layer.learningRate or (1.0, 1.0)
            wds = layer.weightDecay or (1.0, 1.0)
            params.append(wt)
            groups.append({"params": [wt], "lr_mult": lrs[0], "wd_mult": wds[0]})
            if bt is not None:
                params.append(bt)
                groups.append({"params": [bt], "lr_mult": lrs[1], "wd_mult": wds[1]})

            def conv(x: Any, wt: Any = wt, bt: Any = bt, layer: Any = layer, sym: bool = sym,
                     g: int = groups_n) -> Any:
                pt, pb, pl, pr = layer.pad
                if sym:
                    return F.conv2d(x, wt, bt, layer.stride, (pt, pl), layer.dilate, g)
                return F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, bt, layer.stride, 0,
                                layer.dilate, g)
            ops.append(conv)
            ho = (h + pt + pb - ((fh - 1) * layer.dilate[0] + 1)) // layer.stride[0] + 1
            wo = (w + pl + pr - ((fw - 1) * layer.dilate[1] + 1)) // layer.stride[1] + 1
            h, w, c = ho, wo, k
        elif t == "pool":
            (ph, pw), (sy, sx), (pt, pb, pl, pr) = layer.pool, layer.stride, layer.pad
            ho = (h + pt + pb - ph) // sy + 1
            wo = (w + pl + pr - pw) // sx + 1
            ceil_ho = -(-(h - ph) // sy) + 1
            ceil_wo = -(-(w - pw) // sx) + 1
            if pt == pb and pl == pr and 2 * pt <= ph and 2 * pl <= pw:
                mode = "sym"
            elif pt == 0 and pl == 0 and (ceil_ho, ceil_wo) == (ho, wo):
                mode = "ceil"   # same windows: the last ones clipped to the image
            else:
                mode = "pad"
            if layer.method == "max":
                def pool(x: Any, k: Any = (ph, pw), s: Any = (sy, sx), p: Any = layer.pad,
                         mode: str = mode) -> Any:
                    if mode == "sym":
                        return F.max_pool2d(x, k, s, (p[0], p[2]))
                    if mode == "ceil":
                        return F.max_pool2d(x, k, s, 0, ceil_mode=True)
                    return F.max_pool2d(F.pad(x, (p[2], p[3], p[0], p[1]), value=-float("inf")),
                                        k, s)
            else:
                from layerspec.layers.pool import window_counts  # noqa: PLC0415

                ch = window_counts(np, h, ph, sy, pt, ho)
                cw = window_counts(np, w, pw, sx, pl, wo)
                inv = torch.tensor((1.0 / (ch[:, None] * cw[None, :])).astype(np.float32),
                                   device=device)

                def pool(x: Any, k: Any = (ph, pw), s: Any = (sy, sx), p: Any = layer.pad,
                         mode: str = mode, inv: Any = inv) -> Any:
                    if mode == "sym":
                        return F.avg_pool2d(x, k, s, (p[0], p[2]), count_include_pad=False)
                    if mode == "ceil":
                        return F.avg_pool2d(x, k, s, 0, ceil_mode=True, count_include_pad=False)
                    return F.avg_pool2d(F.pad(x, (p[2], p[3], p[0], p[1])), k, s,
                                        divisor_override=1) * inv
            ops.append(pool)
            h, w = ho, wo
        elif t == "relu":
            leak = layer.leak
            ops.append(F.relu if leak == 0 else (lambda x, a=leak: F.leaky_relu(x, a)))
        elif t == "dropout":
            ops.append(("dropout", layer.rate))
        elif t in ("softmaxloss", "loss"):
            ops.append(("loss", None))
        else:
            raise SystemExit(f"bench: no PyTorch twin for layer type {t!r}")

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.params = params

        def forward(self, x: Any, labels: Any) -> Any:
            for op in ops:
                if isinstance(op, tuple):
                    kind, arg = op
                    if kind == "dropout":
                        x = F.dropout(x, arg, self.training)
                    else:
                        n = x.shape[0]
                        lab = labels.view(n, 1, 1).expand(n, x.shape[2], x.shape[3])
                        x = F.cross_entropy(x, lab, reduction="sum") / n
                else:
                    x = op(x)
            return x

    return Model().to(device), groups


class TorchRunner:
    def __init__(self, ls: LayerspecRunner, device: str, channels_last: bool) -> None:
        import torch  # noqa: PLC0415

        self.torch = torch
        self.device = device
        self.model, groups = _torch_model(ls.net, device)
        opts = ls.opts
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        pgroups = [{"params": g["params"], "lr": ls.lr * g["lr_mult"],
                    "weight_decay": opts.weightDecay * g["wd_mult"]} for g in groups]
        self.opt = torch.optim.SGD(pgroups, lr=ls.lr, momentum=opts.momentum,
                                   nesterov=opts.nesterovUpdate)
        x = torch.tensor(ls.x_host.transpose(0, 3, 1, 2).copy(), device=device)
        self.x = x.contiguous(memory_format=fmt)
        self.y = torch.tensor(ls.y_host, dtype=torch.int64, device=device)

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def train_step(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.model(self.x, self.y)
        loss.backward()
        self.opt.step()
        self.sync()

    def forward(self) -> None:
        self.model.eval()
        with self.torch.inference_mode():
            self.model(self.x, self.y)
        self.sync()

    def device_peak(self) -> float | None:
        if self.device != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated() / 2**20


# ------------------------------------------------------------------------------------------


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def run_timing(wl: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved timing of every side of one workload, in this process."""
    batch = wl.batch_gpu if args.backend == "cupy" else wl.batch_cpu
    ls = LayerspecRunner(wl, batch, args.backend)
    sides: dict[str, Any] = {"layerspec": ls}
    if args.torch and have_torch():
        device = "cuda" if args.backend == "cupy" else "cpu"
        sides["torch"] = TorchRunner(ls, device, channels_last=False)
        sides["torch_cl"] = TorchRunner(ls, device, channels_last=True)
    steps = args.steps or wl.steps
    samples: dict[str, list[float]] = {}
    jobs = [(f"{side}.{what}", getattr(r, what)) for what in ("train_step", "forward")
            for side, r in sides.items()]
    for _, fn in jobs:                       # warm-up
        for _ in range(wl.warmup):
            fn()
    for rnd in range(args.repeats):
        order = jobs if rnd % 2 == 0 else jobs[::-1]
        for key, fn in order:
            gc.collect()
            samples.setdefault(key, []).extend(timed(fn, steps))
    return {"batch": batch, "median": {k: statistics.median(v) for k, v in samples.items()},
            "min": {k: min(v) for k, v in samples.items()},
            "n": {k: len(v) for k, v in samples.items()}}


def run_memory(wl: Workload, side: str, args: argparse.Namespace) -> float:
    """Peak memory (MB) of a short training run of one side (run in its own process)."""
    batch = wl.batch_gpu if args.backend == "cupy" else wl.batch_cpu
    ls = LayerspecRunner(wl, batch, args.backend)
    runner: Any = ls
    if side != "layerspec":
        device = "cuda" if args.backend == "cupy" else "cpu"
        runner = TorchRunner(ls, device, channels_last=side == "torch_cl")
        del ls
        gc.collect()
    for _ in range(wl.warmup + 2):
        runner.train_step()
    peak = runner.device_peak()
    if peak is not None:
        return peak
    # VmHWM belongs to this process image; ru_maxrss would include the parent's peak at fork
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--backend", args.backend]
    if args.tf32:
        argv.append("--tf32")
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv + extra


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else (f"{v:.1f}" if v < 1000 else f"{v:.0f}")


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 matrix products (CuPy: CUPY_TF32=1; PyTorch: allow_tf32)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (>= 3; default 3)")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per round and side (default: per workload)")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS and PyTorch threads (default: NumPy's BLAS setting)")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="layerspec only")
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help="skip the peak-memory subprocesses")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for n in names:
        if n not in WORKLOADS:
            ap.error(f"unknown workload {n!r}; choose from {', '.join(WORKLOADS)}")

    limiter = limit_threads(args.threads or None)  # noqa: F841 (kept alive)
    if args.threads:  # layerspec's own host threads follow (read when first used)
        os.environ["LAYERSPEC_THREADS"] = str(args.threads)
    threads = args.threads or blas_threads() or os.cpu_count() or 1
    child_side = args._child.split(":")[1] if args._child else None
    torch_ok = args.torch and child_side != "layerspec" and have_torch()
    if torch_ok:
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True

    if args._child:
        wl_name, side = args._child.split(":")
        print(json.dumps({"peak": run_memory(WORKLOADS[wl_name], side, args)}))
        return 0

    print(f"# layerspec bench: backend {args.backend}, threads {threads}, tf32 "
          f"{'on' if args.tf32 else 'off'}, repeats {args.repeats}")
    print(f"# numpy {np.__version__}; BLAS: {blas_kernel()}")
    if args.backend == "numpy":
        from layerspec.backend import NUMPY  # noqa: PLC0415

        print(f"# layerspec backend: {NUMPY.describe()}; OPENBLAS_THREAD_TIMEOUT="
              f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        if var in os.environ:
            print(f"# {var}={os.environ[var]}")
    if torch_ok:
        import torch  # noqa: PLC0415

        dev = torch.cuda.get_device_name() if args.backend == "cupy" else "cpu"
        print(f"# torch {torch.__version__} ({dev}), {torch.get_num_threads()} threads")
    else:
        print("# PyTorch not importable (or --no-torch): layerspec columns only")
    results: dict[str, Any] = {}
    for name in names:
        wl = WORKLOADS[name]
        r = run_timing(wl, args)
        mem: dict[str, float | None] = {}
        if args.memory:
            for side in ("layerspec", "torch", "torch_cl") if torch_ok else ("layerspec",):
                out = subprocess.run(child_argv(args, ["--workloads", name, "--_child",
                                                       f"{name}:{side}"]),
                                     capture_output=True, text=True, cwd=ROOT)
                try:
                    mem[side] = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
                except (IndexError, ValueError, KeyError):
                    print(f"# memory run {name}:{side} failed:\n{out.stderr[-2000:]}",
                          file=sys.stderr)
                    mem[side] = None
        r["peak_mb"] = mem
        results[name] = r
        print_table({name: r}, header=len(results) == 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    mem_kind = "device MiB in use" if args.backend == "cupy" else "RSS MB (VmHWM)"
    print(f"# ms = median over {args.repeats} interleaved rounds after warm-up; ratio = "
          f"layerspec / PyTorch (NCHW, channels_last); peak = {mem_kind} of a training run, "
          f"one process per side")
    return 0


def print_table(results: dict[str, Any], header: bool = True) -> None:
    cols = ["workload", "what", "layerspec ms", "torch ms", "torch CL ms", "ratio NCHW",
            "ratio CL"]
    if header:
        print("| " + " | ".join(cols + ["peak layerspec / torch / torch CL"]) + " |")
        print("|" + "---|" * (len(cols) + 1))
    for name, r in results.items():
        med = r["median"]
        for what, key in (("train", "train_step"), ("fwd", "forward")):
            a = med.get(f"layerspec.{key}")
            t = med.get(f"torch.{key}")
            tc = med.get(f"torch_cl.{key}")
            mem = ""
            if what == "train":
                pk = r.get("peak_mb", {})
                mem = " / ".join("—" if pk.get(s) is None else f"{pk[s]:.0f}"
                                 for s in ("layerspec", "torch", "torch_cl"))
            print(f"| {name} b{r['batch']} | {what} | {fmt_ms(a)} | {fmt_ms(t)} | {fmt_ms(tc)} | "
                  f"{fmt_ratio(a, t)} | {fmt_ratio(a, tc)} | {mem} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
