"""The ``layerspec`` command line.

Exit status: 0 success; 2 for any input error (spec, ``.m``, ``.mat``, data, a spec that does
not fit its input); 1 for a runtime failure. Errors are printed as one line on stderr, never a
traceback (set ``LAYERSPEC_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ShapeError, SpecError


def _parse_input(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise SpecError(f"--input: expected H,W,C such as 28,28,1, got {text!r}") from None
    if len(vals) != 3 or min(vals) < 1:
        raise SpecError(f"--input: expected three positive numbers H,W,C, got {text!r}")
    return vals[0], vals[1], vals[2]


def parse_defines(items: Sequence[str] | None) -> dict[str, Any]:
    """``--define NAME=VALUE`` (or an exact expression ``'size(x,1)=320'``) as a mapping."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.rpartition("=")
        if not sep or not key.strip():
            raise SpecError(f"--define: expected NAME=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise SpecError(f"--define {key.strip()}: {value!r} is not a number") from None
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from . import check as chk  # noqa: PLC0415
    from .net import Net, resolve_weights  # noqa: PLC0415
    from .spec import spec_from_source  # noqa: PLC0415

    spec, embedded = spec_from_source(args.spec)
    defines = parse_defines(args.define)
    weights = resolve_weights(spec, embedded, None, spec.seed, defines)
    net = Net(spec, weights, "numpy")
    shape = _parse_input(args.input) if args.input else spec.input
    if shape is None:
        raise SpecError("the spec gives no 'input: [H, W, C]'; pass --input H,W,C",
                        file=spec.source)
    try:
        infos = net.info(shape)
    except ShapeError as err:
        print(str(err), file=sys.stderr)
        for line in chk.fit_explanation(net, err):
            print(f"note: {line}", file=sys.stderr)
        return 2
    if args.json:
        print(chk.to_json(net, infos, shape))
    else:
        print(f"{spec.name}: {len(spec.layers)} layers, input {shape[0]}x{shape[1]}x{shape[2]}")
        print(chk.table(infos, shape))
    if args.diagnose:
        stats, warnings = chk.diagnose(net, shape, seed=spec.seed)
        if not args.json:
            print()
            print(f"activations at initialisation (N(0,1) input, mode "
                  f"'{chk.diagnose_mode(net)}'):")
            print(chk.diagnose_text(stats))
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {n}")
        return n
    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def cmd_run(args: argparse.Namespace) -> int:
    from . import distributed  # noqa: PLC0415
    from .runner import RunError, RunInterrupted, run  # noqa: PLC0415

    if args.distributed or distributed.launched_by_mpi():
        world = distributed.init_world()
        return distributed.run_main(
            world, lambda: run(args.spec, backend=args.backend, epochs=args.epochs,
                               out=args.out, seed=args.seed, fresh=args.fresh,
                               defines=parse_defines(args.define), world=world),
            debug=bool(os.environ.get("LAYERSPEC_DEBUG")))
    try:
        run(args.spec, backend=args.backend, epochs=args.epochs, out=args.out, seed=args.seed,
            fresh=args.fresh, defines=parse_defines(args.define))
    except RunError as err:
        if os.environ.get("LAYERSPEC_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RunInterrupted:
        return 130  # the runner has said how to resume
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .runner import evaluate  # noqa: PLC0415

    result = evaluate(args.source, weights=args.weights, backend=args.backend,
                      defines=parse_defines(args.define))
    for note in result.notes:
        print(note, file=sys.stderr)
    print(result.report())
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    from .port import port  # noqa: PLC0415

    shape = _parse_input(args.input) if args.input else None
    result = port(args.src, args.output, parse_defines(args.define), input_size=shape,
                  skip_unsupported=args.skip_unsupported, resume_dir=args.resume_dir)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for n in result.notes:
        print(f"note: {n}", file=sys.stderr)
    wrote = f"{result.spec_path}" + (f" and {result.weights_path}" if result.weights_path
                                     else "")
    print(f"wrote {wrote} ({len(result.spec.layers)} layers)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_mat  # noqa: PLC0415

    out = export_mat(args.source, args.mat, parse_defines(args.define))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="layerspec",
        description="Run MatConvNet-style layer-list networks from YAML spec files.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="validate a spec and show its layers' shapes",
                       description="Validate SPEC and print the layer table (output sizes, "
                                   "parameters, FLOPs, receptive fields). When the spec does "
                                   "not fit its input, name the failing layer and the input "
                                   "sizes that fit.")
    c.add_argument("spec", help="a spec file (.yaml)")
    c.add_argument("--input", metavar="H,W,C", help="input size to check instead of the spec's")
    c.add_argument("--json", action="store_true", help="print the table as JSON")
    c.add_argument("--diagnose", action="store_true",
                   help="also run a forward pass at initialisation and report dead activations")
    c.add_argument("--define", action="append", metavar="NAME=VALUE",
                   help="bind a name or an exact Matlab expression used by initializers")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="train a spec on its data (cnn_train), with checkpoints",
                       description="Train SPEC on the data its 'data:' section names, with "
                                   "cnn_train's rules. Writes net-epoch-N.npz (every epoch), "
                                   "stats.json and curves.png into DIR (default "
                                   "runs/<name>/) and resumes from the last complete "
                                   "checkpoint there unless --fresh.")
    r.add_argument("spec", help="a spec file (.yaml)")
    r.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                   help="array backend (default: auto = CuPy when a GPU is usable)")
    r.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="train until N epochs are done (overrides train: numEpochs)")
    r.add_argument("--out", metavar="DIR", help="output folder (default: runs/<name>/)")
    r.add_argument("--seed", type=_seed, metavar="N",
                   help="seed for the weight initialisation and cnn_train's randomSeed")
    r.add_argument("--fresh", action="store_true",
                   help="start over: delete DIR's old checkpoints instead of resuming")
    r.add_argument("--define", action="append", metavar="NAME=VALUE",
                   help="bind a name or an exact Matlab expression used by initializers")
    r.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (needs mpi4py); automatic under "
                        "mpiexec/mpirun: mpiexec -n 4 layerspec run SPEC")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="evaluate a checkpoint on the test split",
                       description="Loss, top-1/top-5 error and per-class accuracy on the test "
                                   "split of the spec's data. SOURCE is a spec (with "
                                   "--weights), a checkpoint alone (its embedded spec) or a run "
                                   "folder (its newest checkpoint).")
    e.add_argument("source", metavar="SPEC_OR_CKPT", help="a spec, a checkpoint or a run folder")
    e.add_argument("--weights", metavar="CKPT", help="a checkpoint or weights .npz")
    e.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                   help="array backend (default: auto)")
    e.add_argument("--define", action="append", metavar="NAME=VALUE",
                   help="bind a name or an exact Matlab expression used by initializers")
    e.set_defaults(func=cmd_eval)

    po = sub.add_parser("port", help="Matlab source (.m) or MatConvNet .mat -> spec (+ weights)",
                        description="Translate SRC into a spec OUT.yaml. A .m file is parsed "
                                    "and translated, never run; a .mat network also gives "
                                    "OUT.npz (its weights), which the spec names.")
    po.add_argument("src", help="a Matlab source file (.m) or a MatConvNet network (.mat)")
    po.add_argument("-o", "--output", required=True, metavar="OUT.yaml",
                    help="the spec file to write")
    po.add_argument("--define", action="append", metavar="NAME=VALUE",
                    help="bind a name or an exact Matlab expression, e.g. "
                         "'size(imdb.images.data,1)=320' (written into the spec's defines)")
    po.add_argument("--input", metavar="H,W,C", help="the input size to write into the spec")
    po.add_argument("--skip-unsupported", action="store_true",
                    help="skip statements that cannot be translated (a warning each) instead "
                         "of failing")
    po.add_argument("--resume-dir", metavar="DIR",
                    help="from a cnn_train checkpoint net-epoch-N.mat: also write "
                         "DIR/net-epoch-N.npz with its solver state (momentum), so "
                         "`layerspec run OUT.yaml --out DIR` continues at epoch N+1")
    po.set_defaults(func=cmd_port)

    ex = sub.add_parser("export", help="spec or checkpoint -> MatConvNet .mat",
                        description="Write a SimpleNN .mat (layers, meta) that vl_simplenn "
                                    "runs unchanged.")
    ex.add_argument("source", metavar="SPEC_OR_CKPT",
                    help="a spec (.yaml; weights from its 'weights:' file or initializers) "
                         "or a checkpoint (.npz)")
    ex.add_argument("--mat", required=True, metavar="OUT.mat", help="the .mat file to write")
    ex.add_argument("--define", action="append", metavar="NAME=VALUE",
                    help="bind a name or an exact Matlab expression used by initializers")
    ex.set_defaults(func=cmd_export)
    return p


def _version() -> str:
    from . import __version__  # noqa: PLC0415

    return f"layerspec {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("LAYERSPEC_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except SpecError as err:
        if debug:
            raise
        print(str(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a runtime failure: one line, no traceback
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (set LAYERSPEC_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
