"""Reading MatConvNet ``.mat`` networks (SimpleNN) into layerspec's raw spec form.

MatConvNet stores a SimpleNN network as a struct ``net`` with a cell array ``net.layers``
of layer structs (and ``net.meta``). Model files from the MatConvNet model zoo hold
``layers`` (and ``meta``) at the top level; ``cnn_train`` checkpoints hold a variable
``net``. Chain-shaped DagNN networks (``DagNN.saveobj``'s struct) are first rewritten as the
equivalent SimpleNN struct (:func:`simplenn_from_dagnn`). This module turns any of them into a
plain dict::

    {"name": ..., "input": [H, W, C] or None,
     "layers": [{"type": "conv", "name": "layer1", "weights": [W, b], "stride": 1, ...}, ...],
     "meta": {...JSON-able...}}

Array layouts (layerspec's, which keep MatConvNet's index order):

* data: ``(N, H, W, C)`` C-contiguous (MatConvNet: ``H x W x C x N``), see :func:`to_nhwc`;
* conv filters ``(FH, FW, C, K)``; convt filters ``(FH, FW, K, D)``; biases ``(K,)``
  (an empty bias ``[]`` becomes a ``(0,)`` array: "no bias");
* bnorm: ``g`` and ``b`` ``(C,)``, moments ``(C, 2)`` = ``[mu sigma]``;
* labels: 0-based int64, ``-1`` = ignore (Matlab's 0), ``(N,)`` or ``(N, H, W)``.

Nothing read from a file is ever executed: scipy's MAT reader does not unpickle, and
Matlab function handles / objects become inert :class:`MatlabHandle` markers that
:func:`raw_spec_from_net` refuses with a :class:`~layerspec.errors.MatFileError`.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, MatFileError, ShapeError

__all__ = [
    "SIMPLENN_TYPES", "MatlabHandle", "loadmat_clean", "find_net", "raw_spec_from_net",
    "simplenn_from_dagnn", "solver_state_arrays", "checkpoint_epoch", "checkpoint_stats",
    "load_net", "layer_weights", "labels_from_matlab", "to_nhwc", "from_nhwc",
]

#: the layer types that MatConvNet's ``vl_simplenn`` runs (``custom`` excluded)
SIMPLENN_TYPES = frozenset({
    "conv", "convt", "pool", "normalize", "lrn", "softmax", "loss", "softmaxloss", "relu",
    "sigmoid", "noffset", "spnorm", "dropout", "bnorm", "pdist",
})

#: layer types whose ``class`` field holds per-batch data (labels / targets), not a setting
_CLASS_DATA_TYPES = frozenset({"loss", "softmaxloss", "pdist"})
_WEIGHTED_TYPES = frozenset({"conv", "convt", "bnorm"})

# fields kept in the raw spec (MatConvNet's names), grouped by how their values convert
_GEOMETRY_FIELDS = frozenset({"stride", "pad", "dilate", "pool", "upsample", "crop",
                              "numGroups"})
_NUMBER_FIELDS = frozenset({"leak", "rate", "epsilon", "p", "param"})
_MULTIPLIER_FIELDS = frozenset({"learningRate", "weightDecay"})
_BOOL_FIELDS = frozenset({"noRoot", "aggregate"})
_STRING_FIELDS = frozenset({"method"})
_KEPT_FIELDS = (_GEOMETRY_FIELDS | _NUMBER_FIELDS | _MULTIPLIER_FIELDS | _BOOL_FIELDS
                | _STRING_FIELDS | {"weights"})
# Everything else is dropped: ``opts`` (cuDNN switches), ``precious`` (memory hint),
# ``momentum`` (training state), ``class`` of loss layers (stale labels), ``instanceWeights``,
# old-style ``fraction`` (ignored by vl_simplenn_tidy), zoo extras such as ``size``.


class MatlabHandle:
    """An inert stand-in for a Matlab function handle or object found in a ``.mat`` file."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"MatlabHandle({self.what!r})"


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------

def loadmat_clean(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.mat`` file into plain Python values.

    structs become dicts (a struct array of several elements a list of dicts), cell arrays
    lists (column-major order; a 1-element cell stays a 1-element list), char arrays ``str``,
    numeric arrays stay N-D NumPy arrays with their Matlab shape (trailing singleton
    dimensions are dropped by the file format). Variables whose names start with ``__`` are
    left out. MATLAB v7.3 (HDF5) files are read with h5py when it is installed.

    Raises :class:`MatFileError` (one line, naming the file) for anything unreadable.
    """
    label = os.fspath(path)
    try:
        st = os.stat(label)
    except FileNotFoundError:
        raise MatFileError("no such file", file=label) from None
    except OSError as e:
        raise MatFileError(f"cannot read the file: {e.strerror or e}", file=label) from None
    if os.path.isdir(label):
        raise MatFileError("is a directory, not a .mat file", file=label)
    if st.st_size == 0:
        raise MatFileError("empty file (0 bytes), not a MATLAB .mat file", file=label)
    import scipy.io as sio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = sio.loadmat(label, squeeze_me=False, struct_as_record=False,
                              appendmat=False)
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        return _load_hdf5(label)
    except MemoryError:
        raise MatFileError("not enough memory to read the file", file=label) from None
    except Exception as e:  # noqa: BLE001 - every reader failure becomes one clear line
        raise MatFileError(_describe_read_error(e, st.st_size), file=label) from None
    return {k: _unwrap(v) for k, v in raw.items() if not k.startswith("__")}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _describe_read_error(e: Exception, size: int) -> str:
    msg = _one_line(e)
    low = msg.lower()
    if "unknown mat file type" in low or "first 4 bytes" in low or "first 20 bytes" in low:
        return f"not a MATLAB .mat file ({msg})"
    if (isinstance(e, (EOFError, IndexError, OSError, TypeError)) or "truncat" in low
            or "consume" in low or "decompress" in low or type(e).__module__ == "zlib"):
        return f"truncated or corrupt .mat file ({size} bytes): {msg}"
    return f"cannot read as a MATLAB .mat file: {msg}"


def _unwrap(v: Any) -> Any:
    from scipy.io.matlab import MatlabFunction, MatlabOpaque, mat_struct

    if isinstance(v, mat_struct):
        return {f: _unwrap(getattr(v, f)) for f in v._fieldnames}
    if isinstance(v, MatlabFunction):
        return MatlabHandle("function handle")
    if isinstance(v, MatlabOpaque):
        return MatlabHandle("Matlab object (opaque)")
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            elems = v.ravel(order="F")
            if elems.size and all(isinstance(e, mat_struct) for e in elems):  # struct (array)
                items = [_unwrap(e) for e in elems]
                return items[0] if len(items) == 1 else items
            return [_unwrap(e) for e in elems]  # cell array
        if v.dtype.kind == "U":
            return _char(list(v.ravel(order="F")))
        return np.asarray(v)  # numeric / logical: keep the N-D Matlab shape
    if hasattr(v, "toarray"):  # scipy.sparse matrix
        return np.asarray(v.toarray())
    return v


def _char(rows: list[str]) -> str | list[str]:
    """One row of characters -> str; a multi-row char matrix -> list of its rows."""
    rows = [str(r) for r in rows]
    if len(rows) == 0:
        return ""
    return rows[0] if len(rows) == 1 else rows


# ----- MATLAB v7.3 (HDF5) ---------------------------------------------------------------

def _load_hdf5(label: str) -> dict[str, Any]:
    try:
        import h5py
    except ImportError:
        raise MatFileError(
            "MATLAB v7.3 (HDF5) file: install h5py (pip install h5py) to read it, or re-save "
            "it in Matlab with save(..., '-v7')", file=label) from None
    try:
        with h5py.File(label, "r") as f:
            return {k: _h5_value(h5py, f, f[k]) for k in f.keys() if not k.startswith("#")}
    except MatFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MatFileError(f"cannot read MATLAB v7.3 (HDF5) file: {_one_line(e)}",
                           file=label) from None


def _h5_attr(obj: Any, name: str) -> str | None:
    v = obj.attrs.get(name)
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else b""
    return v.decode() if isinstance(v, bytes) else str(v)


def _h5_field_names(group: Any) -> list[str]:
    names = group.attrs.get("MATLAB_fields")
    if names is None:
        return list(group.keys())
    out = []
    for n in names:
        if isinstance(n, bytes):
            out.append(n.decode())
        else:
            out.append(b"".join(bytes(c) for c in np.asarray(n).ravel()).decode())
    return out


def _h5_is_ref(h5py: Any, dataset: Any) -> bool:
    return h5py.check_dtype(ref=dataset.dtype) is not None


def _h5_value(h5py: Any, f: Any, obj: Any) -> Any:
    cls = _h5_attr(obj, "MATLAB_class")
    if cls == "function_handle":
        return MatlabHandle("function handle")
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            import scipy.sparse

            nrows = int(np.asarray(obj.attrs["MATLAB_sparse"]).ravel()[0])
            jc = np.asarray(obj["jc"][()]).ravel()
            ir = np.asarray(obj["ir"][()]).ravel() if "ir" in obj else np.zeros(0, int)
            data = np.asarray(obj["data"][()]).ravel() if "data" in obj else np.zeros(0)
            m = scipy.sparse.csc_matrix((data, ir, jc), shape=(nrows, jc.size - 1))
            return np.asarray(m.toarray())
        if cls not in (None, "struct"):
            return MatlabHandle(f"Matlab object of class {cls}")
        names = [n for n in _h5_field_names(obj) if n in obj]
        fields = {n: obj[n] for n in names}
        is_array = bool(fields) and all(
            isinstance(d, h5py.Dataset) and _h5_is_ref(h5py, d)
            and "MATLAB_class" not in d.attrs for d in fields.values())
        if not is_array:
            return {n: _h5_value(h5py, f, d) for n, d in fields.items()}
        refs = {n: np.asarray(d[()]).ravel() for n, d in fields.items()}
        count = min(r.size for r in refs.values())
        items = [{n: _h5_value(h5py, f, f[refs[n][i]]) for n in names} for i in range(count)]
        return items[0] if count == 1 else items
    # a dataset
    if obj.attrs.get("MATLAB_empty", 0):
        if cls == "char":
            return ""
        if cls == "cell":
            return []
        if cls == "struct":
            return {}
        dims = tuple(int(d) for d in np.asarray(obj[()]).ravel())
        dtype = {"double": np.float64, "single": np.float32, "logical": np.uint8}.get(
            cls or "double", np.float64)
        return np.zeros(dims if len(dims) >= 2 else (0, 0), dtype=dtype)
    data = obj[()]
    if cls == "cell" or _h5_is_ref(h5py, obj):
        return [_h5_value(h5py, f, f[r]) for r in np.asarray(data).ravel()]
    arr = np.asarray(data)
    if arr.dtype.names and {"real", "imag"} <= set(arr.dtype.names):
        arr = arr["real"] + 1j * arr["imag"]
    arr = arr.T  # HDF5 keeps Matlab's column-major data with the dimensions reversed
    if cls == "char":
        chars = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
        return _char(["".join(chr(int(c)) for c in row) for row in chars])
    return np.array(arr)


# ---------------------------------------------------------------------------------------
# the net struct
# ---------------------------------------------------------------------------------------

def _is_dagnn(net: dict[str, Any]) -> bool:
    if "vars" in net and "params" in net:
        return True
    layers = net.get("layers")
    layers = [layers] if isinstance(layers, dict) else layers
    return isinstance(layers, list) and any(
        isinstance(l, dict) and ("block" in l or ("inputs" in l and "outputs" in l))
        for l in layers)


def find_net(contents: dict[str, Any], path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The SimpleNN net struct in a loaded ``.mat`` file.

    ``contents['net']`` (``cnn_train`` checkpoints, nets saved as ``net``), else a model
    file's top-level ``layers`` (with ``meta``, or the pre-``meta`` ``normalization`` and
    ``classes``); a chain-shaped DagNN is returned as its SimpleNN equivalent.
    Raises :class:`MatFileError` naming ``path`` when there is neither.
    """
    label = os.fspath(path) if path is not None else None
    net = contents.get("net")
    if isinstance(net, MatlabHandle):
        raise MatFileError(f"variable 'net' is a {net.what}, not a struct; layerspec reads "
                           f"SimpleNN nets and chain-shaped DagNN nets saved as structs "
                           f"(net = dag.saveobj())", file=label)
    if isinstance(net, dict) and "layers" in net:
        found = net
    elif "layers" in contents:
        found = {k: contents[k] for k in ("layers", "meta", "normalization", "classes",
                                          "vars", "params") if k in contents}
    elif "net" in contents:
        raise MatFileError("variable 'net' has no 'layers' field, so it is not a "
                           "MatConvNet SimpleNN network", file=label)
    else:
        names = sorted(contents)
        held = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8
                                       else "") if names else "no variables"
        raise MatFileError(f"no network found: expected a variable 'net' (cnn_train "
                           f"checkpoint) or 'layers' (model file); the file holds: {held}",
                           file=label)
    if _is_dagnn(found):
        return simplenn_from_dagnn(found, file=label)
    return found


# ----- chain-shaped DagNN ------------------------------------------------------------------

#: DagNN block class -> SimpleNN type; and the block properties kept (DagNN name -> SimpleNN)
_DAGNN_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "dagnn.Conv": ("conv", {"pad": "pad", "stride": "stride", "dilate": "dilate"}),
    "dagnn.ReLU": ("relu", {"leak": "leak"}),
    "dagnn.Pooling": ("pool", {"method": "method", "poolSize": "pool", "pad": "pad",
                               "stride": "stride"}),
    "dagnn.DropOut": ("dropout", {"rate": "rate"}),
    "dagnn.SoftMax": ("softmax", {}),
    "dagnn.Sigmoid": ("sigmoid", {}),
    "dagnn.Loss": ("softmaxloss", {}),
    "dagnn.BatchNorm": ("bnorm", {"epsilon": "epsilon"}),
    "dagnn.LRN": ("normalize", {"param": "param"}),
}
#: dagnn.Loss metrics (cnn_train's error reports): not part of the objective, left out
_DAGNN_METRICS = frozenset({"classerror", "topkerror", "binaryerror"})


def _list_of(v: Any, kind: type) -> list[Any] | None:
    """A loaded Matlab value as a list of ``kind`` items: a lone item, an empty array or a
    list of them (scipy.io's three ways of giving a cell or struct array); None otherwise."""
    if isinstance(v, kind):
        return [v]
    if isinstance(v, np.ndarray) and v.size == 0:
        return []
    if isinstance(v, list) and all(isinstance(e, kind) for e in v):
        return v
    return None


def _names(v: Any) -> list[str] | None:
    return _list_of(v, str)


def _struct_list(v: Any) -> list[dict[str, Any]] | None:
    return _list_of(v, dict)


def simplenn_from_dagnn(net: dict[str, Any], *, file: str | None = None) -> dict[str, Any]:
    """A chain-shaped DagNN net as ``DagNN.saveobj`` stores it (``layers`` with name, type,
    inputs, outputs, params, block; ``params`` with name, value, learningRate, weightDecay;
    ``vars``; ``meta``) -> the equivalent SimpleNN struct (``layers`` as a list of SimpleNN
    layer structs, ``meta``), for :func:`raw_spec_from_net`.

    Each layer must read the previous layer's single output (a ``dagnn.Loss`` also reads the
    labels, a network input). ``dagnn.Loss`` layers computing an error metric (``classerror``,
    ``topkerror``, ``binaryerror``) whose outputs nothing reads are left out. Anything else
    -- branches, merges, unsupported blocks -- is a :class:`MatFileError` naming the layer."""
    def fail(msg: str) -> MatFileError:
        return MatFileError(f"this is a DagNN network, {msg}", file=file)

    layers = _struct_list(net.get("layers"))
    if layers is None:
        raise fail(f"but net.layers is {_kind(net.get('layers'))}, not a struct array")
    params = _struct_list(net.get("params"))
    if params is None:
        raise fail(f"but net.params is {_kind(net.get('params'))}, not a struct array of "
                   f"parameters (name, value, learningRate, weightDecay)")
    by_name: dict[str, dict[str, Any]] = {}
    for k, p in enumerate(params):
        if not isinstance(p.get("name"), str) or "value" not in p:
            raise fail(f"but net.params({k + 1}) has no name or value")
        by_name[p["name"]] = p

    infos = []
    for k, layer in enumerate(layers):
        lname = layer.get("name") if isinstance(layer.get("name"), str) else f"layer{k + 1}"
        btype = layer.get("type")
        desc = f"layer {lname!r} (net.layers({k + 1}), type {btype!r})"
        ins, outs = _names(layer.get("inputs")), _names(layer.get("outputs"))
        pnames = _names(layer.get("params", []))
        block = layer.get("block", {})
        if ins is None or outs is None or pnames is None or not isinstance(block, dict):
            raise fail(f"but {desc} lacks the inputs/outputs/params cells or its block struct")
        if btype not in _DAGNN_TYPES:
            raise fail(f"{desc}: unsupported block type; chain-shaped DagNN networks of "
                       f"{', '.join(sorted(_DAGNN_TYPES))} are ported")
        metric = None
        if btype == "dagnn.Loss":
            loss = block.get("loss", "softmaxlog")
            if loss in _DAGNN_METRICS:
                metric = loss
            elif loss != "softmaxlog":
                raise fail(f"{desc}: loss {loss!r} is not supported (only 'softmaxlog', "
                           f"SimpleNN's softmaxloss)")
            if len(ins) != 2:
                raise fail(f"{desc} has {len(ins)} inputs; a loss reads the prediction and "
                           f"the labels")
        elif len(ins) != 1:
            raise fail(f"{desc} has {len(ins)} inputs ({', '.join(ins)}): networks with "
                       f"branches or merges cannot be ported")
        if len(outs) != 1:
            raise fail(f"{desc} has {len(outs)} outputs: networks with branches cannot be "
                       f"ported")
        infos.append({"name": lname, "type": btype, "desc": desc, "ins": ins, "out": outs[0],
                      "params": pnames, "block": block, "metric": metric})

    read = {v for info in infos for v in info["ins"]}
    infos = [i for i in infos if not (i["metric"] and i["out"] not in read)]
    producer = {}
    for info in infos:
        if info["out"] in producer:
            raise fail(f"{info['desc']} writes variable {info['out']!r}, which "
                       f"{producer[info['out']]['desc']} writes too")
        producer[info["out"]] = info
    consumers: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        if info["metric"]:
            raise fail(f"{info['desc']}: its error metric output {info['out']!r} is read by "
                       f"another layer")
        if info["type"] == "dagnn.Loss" and info["ins"][1] in producer:
            raise fail(f"{info['desc']}: its label input {info['ins'][1]!r} is computed by "
                       f"{producer[info['ins'][1]]['desc']}, not a network input")
        consumers.setdefault(info["ins"][0], []).append(info)
    starts = [i for i in infos if i["ins"][0] not in producer]
    if len(starts) != 1:
        raise fail(f"with {len(starts)} layers reading network inputs "
                   f"({', '.join(repr(i['name']) for i in starts)}); only a chain reading one "
                   f"input can be ported")
    chain = [starts[0]]
    while True:
        nxt = consumers.get(chain[-1]["out"], [])
        if len(nxt) > 1:
            raise fail(f"with branches: variable {chain[-1]['out']!r} (the output of "
                       f"{chain[-1]['desc']}) is read by "
                       f"{' and '.join(i['desc'] for i in nxt)}; only chains can be ported")
        if not nxt:
            break
        chain.append(nxt[0])
    if len(chain) != len(infos):
        left = next(i for i in infos if i not in chain)
        raise fail(f"with branches: {left['desc']} is not on the chain from "
                   f"{chain[0]['desc']} to {chain[-1]['desc']}")

    out_layers = []
    for info in chain:
        ltype, keep = _DAGNN_TYPES[info["type"]]
        block = info["block"]
        layer: dict[str, Any] = {"type": ltype, "name": info["name"]}
        for src_key, dst_key in keep.items():
            if src_key in block:
                layer[dst_key] = block[src_key]
        ps = []
        for pname in info["params"]:
            if pname not in by_name:
                raise fail(f"{info['desc']} uses parameter {pname!r}, which net.params "
                           f"does not hold")
            ps.append(by_name[pname])
        if ltype in _WEIGHTED_TYPES and not ps:
            raise fail(f"but {info['desc']} has no parameters (net.layers(k).params)")
        if ltype == "conv":
            has_bias = block.get("hasBias", len(ps) > 1)
            has_bias = bool(np.asarray(has_bias).ravel()[0]) if not isinstance(
                has_bias, bool) else has_bias
            if len(ps) == 1 and not has_bias:
                ps = [ps[0], {"value": np.zeros((0, 0), dtype=np.float32)}]
        elif ps and ltype not in _WEIGHTED_TYPES:
            raise fail(f"{info['desc']} has parameters, but a {ltype} layer has no weights")
        if ps:
            layer["weights"] = [p["value"] for p in ps]
            for key in ("learningRate", "weightDecay"):
                vals = [p.get(key) for p in ps]
                if all(isinstance(v, np.ndarray) and v.size == 1 for v in vals):
                    layer[key] = np.array([float(v.reshape(())) for v in vals])
        out_layers.append(layer)
    return {"layers": out_layers, "meta": net.get("meta", {})}


def load_net(path: str | os.PathLike[str], *, name: str | None = None) -> dict[str, Any]:
    """``raw_spec_from_net(find_net(loadmat_clean(path), path), ...)`` in one call."""
    return raw_spec_from_net(find_net(loadmat_clean(path), path), name=name, source=path)


def raw_spec_from_net(net: dict[str, Any], *, name: str | None = None,
                      source: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Convert a MatConvNet SimpleNN net struct (as :func:`loadmat_clean` gives it) into
    layerspec's raw spec dict. ``name`` defaults to the stem of ``source``; ``source`` (the
    file) is also used to locate errors."""
    file = os.fspath(source) if source is not None else None
    if name is None and file is not None:
        name = Path(file).stem
    if not isinstance(net, dict) or "layers" not in net:
        raise MatFileError("the network struct has no 'layers' field", file=file)
    if _is_dagnn(net):
        net = simplenn_from_dagnn(net, file=file)
    layers = net["layers"]
    if isinstance(layers, dict):  # a struct array of one element
        layers = [layers]
    elif isinstance(layers, np.ndarray) and layers.size == 0:
        layers = []
    if not isinstance(layers, list):
        raise MatFileError(f"net.layers is not a cell array of layer structs (got "
                           f"{_kind(layers)})", file=file)
    if not layers:
        raise MatFileError("the network has no layers", file=file)
    out_layers = [_convert_layer(layer, i, file) for i, layer in enumerate(layers)]

    meta_in = net.get("meta")
    meta_in = dict(meta_in) if isinstance(meta_in, dict) else {}
    for key in ("normalization", "classes"):  # pre-meta model files
        if key in net and key not in meta_in:
            meta_in[key] = net[key]
    return {"name": name, "input": _input_size(meta_in, out_layers),
            "layers": out_layers, "meta": _plain_meta(meta_in)}


# ----- cnn_train checkpoints: the solver state ---------------------------------------------

#: MatConvNet solver struct fields -> layerspec's state names (layerspec.train._update)
_SOLVER_FIELDS = {"m": "m", "v": "v", "t": "t", "g_sqr": "g2", "delta_sqr": "d2"}


def checkpoint_epoch(contents: dict[str, Any], path: str | os.PathLike[str] | None) -> int | None:
    """The epoch a ``cnn_train`` checkpoint holds: N of ``net-epoch-N.mat``, else the number of
    ``stats.train`` entries; None when neither says."""
    import re  # noqa: PLC0415

    if path is not None:
        m = re.fullmatch(r"net-epoch-(\d+)\.mat", Path(path).name)
        if m:
            return int(m.group(1))
    stats = contents.get("stats")
    train = stats.get("train") if isinstance(stats, dict) else None
    if isinstance(train, list) and train and all(isinstance(t, dict) for t in train):
        return len(train)
    if isinstance(train, dict):
        return 1
    return None


def checkpoint_stats(contents: dict[str, Any], epoch: int) -> list[dict[str, Any]]:
    """``stats.train(e)`` / ``stats.val(e)`` as layerspec's per-epoch entries (stats.json)."""
    stats = contents.get("stats")
    if not isinstance(stats, dict):
        return []
    out: list[dict[str, Any]] = [{"epoch": e + 1} for e in range(epoch)]
    for split in ("train", "val"):
        entries = stats.get(split)
        entries = [entries] if isinstance(entries, dict) else entries
        if not isinstance(entries, list):
            continue
        for e, st in enumerate(entries[:epoch]):
            if not isinstance(st, dict):
                continue
            vals = {}
            for k in ("objective", "top1err", "top5err", "num", "time"):
                a = st.get(k)
                if isinstance(a, np.ndarray) and a.size == 1 and a.dtype.kind in "biuf":
                    vals[k] = float(a.reshape(()))
            if vals:
                out[e][split] = vals
    return [e for e in out if len(e) > 1]


def solver_state_arrays(contents: dict[str, Any], raw: dict[str, Any], *,
                        solver: str = "sgd", file: str | None = None) -> dict[str, np.ndarray]:
    """A ``cnn_train`` checkpoint's ``state.solverState{l}{j}`` as the arrays of
    :meth:`layerspec.train.Trainer.state_arrays` (``s<i>_<j>_<name>``, 0-based), each in the
    layout of its weight in ``raw`` (:func:`raw_spec_from_net`'s result).

    ``0`` (never updated) gives nothing; an array is the SGD momentum ``m`` (the squared-gradient
    accumulator ``g2`` for ``solver`` adagrad / rmsprop); a struct is adam's ``{m, v, t}`` or
    adadelta's ``{g_sqr, delta_sqr}``. An empty dict when the file holds no solver state."""
    state = contents.get("state")
    solver_state = state.get("solverState") if isinstance(state, dict) else None
    if solver_state is None or (isinstance(solver_state, np.ndarray) and solver_state.size == 0):
        return {}
    if not isinstance(solver_state, list):
        raise MatFileError(f"state.solverState is {_kind(solver_state)}, not a cell array "
                           f"(one cell per layer)", file=file)
    layers = raw["layers"]
    if len(solver_state) != len(layers):
        raise MatFileError(f"state.solverState has {len(solver_state)} cells but the network "
                           f"has {len(layers)} layers", file=file)
    plain = "g2" if solver in ("adagrad", "rmsprop") else "m"
    out: dict[str, np.ndarray] = {}
    for i, (cells, layer) in enumerate(zip(solver_state, layers, strict=True)):
        weights = layer.get("weights", [])
        cells = _as_list(cells)
        if not weights:
            if any(not _is_zero(c) for c in cells):
                raise MatFileError(f"state.solverState{{{i + 1}}} holds state, but layer "
                                   f"{i + 1} ({layer['name']!r}) has no weights", file=file)
            continue
        if len(cells) > len(weights):
            raise MatFileError(f"state.solverState{{{i + 1}}} has {len(cells)} cells, layer "
                               f"{i + 1} ({layer['name']!r}) {len(weights)} weights", file=file)
        for j, cell in enumerate(cells):
            where = f"state.solverState{{{i + 1}}}{{{j + 1}}}"
            if _is_zero(cell):
                continue
            fields = cell.items() if isinstance(cell, dict) else [(plain, cell)]
            for key, value in fields:
                name = _SOLVER_FIELDS.get(key) if isinstance(cell, dict) else key
                if name is None:
                    raise MatFileError(f"{where}: unknown solver state field {key!r} (known: "
                                       f"{', '.join(_SOLVER_FIELDS)})", file=file)
                if name == "t":
                    out[f"s{i}_{j}_t"] = np.asarray(int(np.asarray(value).reshape(())))
                    continue
                if _is_zero(value):
                    continue
                out[f"s{i}_{j}_{name}"] = _like_weight(value, weights[j], where, file)
    return out


def _is_zero(v: Any) -> bool:
    if isinstance(v, list):
        return not v
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        return v.size == 0 or (v.size == 1 and float(v.reshape(())) == 0.0)
    return False


def _like_weight(v: Any, w: np.ndarray, where: str, file: str | None) -> np.ndarray:
    a = _float_array(v, where, file)
    if a.size != w.size:
        raise ShapeError(f"{where}: {a.size} elements (shape {a.shape}), but its weight has "
                         f"shape {w.shape}", file=file)
    return np.ascontiguousarray(a.reshape(w.shape, order="F"), dtype=w.dtype)


def _kind(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {v.shape}"
    if isinstance(v, MatlabHandle):
        return f"a {v.what}"
    return {dict: "a struct", list: "a cell array", str: "a string"}.get(type(v), type(v).__name__)


def _contains_handle(v: Any) -> bool:
    if isinstance(v, MatlabHandle):
        return True
    if isinstance(v, dict):
        return any(_contains_handle(e) for e in v.values())
    if isinstance(v, list):
        return any(_contains_handle(e) for e in v)
    return False


def _convert_layer(layer: Any, i: int, file: str | None) -> dict[str, Any]:
    where = f"net.layers{{{i + 1}}}"
    if not isinstance(layer, dict):
        raise MatFileError(f"{where} is {_kind(layer)}, not a layer struct", file=file)
    ltype = layer.get("type")
    if not isinstance(ltype, str) or not ltype:
        raise MatFileError(f"{where} has no 'type' field (a string such as 'conv')", file=file)
    lname = layer.get("name")
    lname = lname if isinstance(lname, str) else f"layer{i + 1}"  # vl_simplenn_tidy's rule
    desc = f"{where} ({lname!r}, type {ltype!r})"
    if ltype == "custom":
        raise MatFileError(f"{desc}: custom layers hold Matlab function handles and cannot "
                           f"be ported", file=file)
    if ltype not in SIMPLENN_TYPES:
        raise MatFileError(f"{desc}: unsupported layer type {ltype!r}; SimpleNN types are "
                           f"{', '.join(sorted(SIMPLENN_TYPES))}", file=file)
    for key, value in layer.items():
        if _contains_handle(value):
            raise MatFileError(f"{desc}: field {key!r} holds a Matlab function handle or "
                               f"object, which cannot be ported", file=file)

    fields = dict(layer)
    if "weights" not in fields and ("filters" in fields or "biases" in fields):
        # legacy {filters, biases} (vl_simplenn_tidy converts them the same way)
        fields["weights"] = [fields.get("filters", np.zeros((0, 0))),
                             fields.get("biases", np.zeros((0, 0)))]
    for new, old in (("learningRate", "LearningRate"), ("weightDecay", "WeightDecay")):
        if new not in fields and "filters" + old in fields:
            fields[new] = [*_numbers(fields["filters" + old], desc, "filters" + old, file),
                           *_numbers(fields.get("biases" + old, 1.0), desc, "biases" + old,
                                     file)]

    out: dict[str, Any] = {"type": ltype, "name": lname}
    for key, value in fields.items():
        if key not in _KEPT_FIELDS or (key == "weights" and ltype not in _WEIGHTED_TYPES):
            continue
        if key == "weights":
            if _as_list(value):  # an empty {} is reported below as "no weights"
                out["weights"] = layer_weights(ltype, _as_list(value), layer=fields,
                                               where=desc, file=file)
        elif key in _GEOMETRY_FIELDS:
            out[key] = _geometry(value, desc, key, file)
        elif key in _MULTIPLIER_FIELDS:
            if isinstance(value, list):
                value = np.asarray(value, dtype=float) if value else np.zeros((0, 0))
            if isinstance(value, np.ndarray) and value.size == 0:
                continue  # cnn_train gives weightless layers empty multipliers
            out[key] = _number_value(value, desc, key, file)
        elif key in _NUMBER_FIELDS:
            out[key] = _number_value(value, desc, key, file)
        elif key in _BOOL_FIELDS:
            vals = _numbers(value, desc, key, file)
            if len(vals) != 1:
                raise MatFileError(f"{desc}: field {key!r} must be true or false", file=file)
            out[key] = bool(vals[0])
        elif key in _STRING_FIELDS:
            if not isinstance(value, str):
                raise MatFileError(f"{desc}: field {key!r} must be a string, got "
                                   f"{_kind(value)}", file=file)
            out[key] = value
    if ltype in _WEIGHTED_TYPES and "weights" not in out:
        raise MatFileError(f"{desc}: the layer has no weights", file=file)
    return out


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    if isinstance(v, np.ndarray):  # a bare array, or a 1-element cell from another reader
        return [] if v.size == 0 else [v]
    return [v]


def _numbers(v: Any, desc: str, key: str, file: str | None) -> list[float]:
    if isinstance(v, (bool, int, float, np.number)):
        return [float(v)]
    if isinstance(v, list) and all(isinstance(e, (int, float, np.number)) for e in v):
        return [float(e) for e in v]
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        return [float(e) for e in v.ravel(order="F")]
    raise MatFileError(f"{desc}: field {key!r} must be numeric, got {_kind(v)}", file=file)


def _num(x: float) -> int | float:
    return int(x) if math.isfinite(x) and x == int(x) else float(x)


def _number_value(v: Any, desc: str, key: str, file: str | None) -> Any:
    """A scalar stays a scalar, a vector becomes a list; whole numbers become ints."""
    vals = _numbers(v, desc, key, file)
    if not vals:
        raise MatFileError(f"{desc}: field {key!r} is empty", file=file)
    scalar = len(vals) == 1 and not isinstance(v, list)
    return _num(vals[0]) if scalar else [_num(x) for x in vals]


def _geometry(v: Any, desc: str, key: str, file: str | None) -> int | list[int]:
    val = _number_value(v, desc, key, file)
    items = val if isinstance(val, list) else [val]
    for x in items:
        if not isinstance(x, int):
            raise MatFileError(f"{desc}: field {key!r} must hold whole numbers, got {x:g}",
                               file=file)
    return val


# ----- weights ----------------------------------------------------------------------------

def _float_array(a: Any, what: str, file: str | None) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise MatFileError(f"{what} must be a numeric array, got {_kind(a)}", file=file)
    return np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)


def _tensor4(a: Any, what: str, file: str | None) -> np.ndarray:
    arr = _float_array(a, what, file)
    if arr.ndim > 4:
        raise MatFileError(f"{what} has {arr.ndim} dimensions {arr.shape}, at most 4 expected",
                           file=file)
    if arr.size == 0:
        raise MatFileError(f"{what} is empty", file=file)
    return arr.reshape(arr.shape + (1,) * (4 - arr.ndim))  # MAT drops trailing singletons


def _vector(a: Any, what: str, file: str | None, like: np.dtype) -> np.ndarray:
    if isinstance(a, np.ndarray) and a.size == 0:
        return np.zeros((0,), dtype=np.float64 if like == np.float64 else np.float32)
    return _float_array(a, what, file).ravel(order="F")


def layer_weights(ltype: str, weights: list[Any], *, layer: dict[str, Any] | None = None,
                  where: str = "layer", file: str | None = None) -> list[np.ndarray]:
    """MatConvNet weight arrays of a ``conv``/``convt``/``bnorm`` layer (or their
    derivatives ``res(i).dzdw``) in layerspec's layout; see the module docstring.

    ``layer`` (the layer's fields) supplies ``numGroups`` for checking a convt bias.
    """
    ws = list(weights)
    if ltype in ("conv", "convt"):
        if len(ws) != 2:
            raise MatFileError(f"{where}: a {ltype} layer needs weights {{filters, biases}}, "
                               f"got {len(ws)} arrays", file=file)
        f = _tensor4(ws[0], f"{where}: the filters", file)
        b = _vector(ws[1], f"{where}: the biases", file, f.dtype)
        if ltype == "conv":
            k, expect = f.shape[3], "the filters' 4th dimension"
        else:
            groups = 1
            if layer is not None and "numGroups" in layer:
                g = layer["numGroups"]
                groups = g if isinstance(g, int) else int(np.asarray(g).ravel()[0])
            k, expect = f.shape[2] * groups, "the filters' 3rd dimension x numGroups"
        if b.size not in (0, k):
            raise ShapeError(f"{where}: {b.size} biases, but {expect} is {k}", file=file)
        return [f, b]
    if ltype == "bnorm":
        if len(ws) not in (2, 3):
            raise MatFileError(f"{where}: a bnorm layer needs weights {{g, b}} or "
                               f"{{g, b, moments}}, got {len(ws)} arrays", file=file)
        g = _vector(ws[0], f"{where}: g", file, np.dtype(np.float32))
        b = _vector(ws[1], f"{where}: b", file, g.dtype)
        c = g.size
        if c == 0 or b.size != c:
            raise ShapeError(f"{where}: g has {c} and b has {b.size} elements; both must "
                             f"have one per channel", file=file)
        m = ws[2] if len(ws) == 3 else np.zeros((0, 0))
        if isinstance(m, np.ndarray) and m.size == 0:
            moments = np.zeros((c, 2), dtype=g.dtype)  # vl_simplenn_tidy's default
        else:
            m = _float_array(m, f"{where}: moments", file)
            if m.size != 2 * c:
                raise ShapeError(f"{where}: moments have {m.size} elements, expected "
                                 f"{c} x 2 = [mu sigma] per channel", file=file)
            moments = np.ascontiguousarray(m.reshape((c, 2), order="F"))
        return [g, b, moments]
    if any(not (isinstance(w, np.ndarray) and w.size == 0) for w in ws):
        raise MatFileError(f"{where}: a {ltype} layer has no weights", file=file)
    return []


# ----- meta -------------------------------------------------------------------------------

_SKIP = object()


def _plain(v: Any) -> Any:
    """A JSON-able copy of ``v``, or ``_SKIP`` when it is not simple (big N-D arrays...)."""
    if isinstance(v, dict):
        out = {}
        for k, e in v.items():
            pe = _plain(e)
            if pe is not _SKIP:
                out[k] = pe
        return out
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        items = [_plain(e) for e in v]
        return _SKIP if any(e is _SKIP for e in items) else items
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        return _num(float(v))
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        if v.size == 0:
            return []
        if v.size == 1:
            return _num(float(v.item()))
        if sum(d > 1 for d in v.shape) == 1:
            return [_num(float(x)) for x in v.ravel()]
        if v.ndim == 2 and v.size <= 4096:
            return [[_num(float(x)) for x in row] for row in v]
    return _SKIP


def _strings(v: Any) -> list[str] | None:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(e, str) for e in v):
        return list(v)
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        return [str(_num(float(x))) for x in v.ravel(order="F")]
    return None


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = _plain(meta)
    classes = meta.get("classes")
    names = descriptions = None
    if isinstance(classes, dict):
        names = _strings(classes.get("name"))
        descriptions = _strings(classes.get("description"))
    elif classes is not None:
        names = _strings(classes)
    out.pop("classes", None)
    if names is not None:
        out["classes"] = names
    if descriptions is not None:
        out["classDescriptions"] = descriptions
    return out


def _input_size(meta: dict[str, Any], layers: list[dict[str, Any]]) -> list[int] | None:
    size = meta.get("inputSize")
    norm = meta.get("normalization")
    if size is None and isinstance(norm, dict):
        size = norm.get("imageSize")
    if not isinstance(size, np.ndarray) or size.dtype.kind not in "biuf" or size.size < 2:
        return None
    vals = [float(x) for x in size.ravel()[:3]]
    if any(not (x == int(x) and x > 0) for x in vals):
        return None
    dims = [int(x) for x in vals]
    if len(dims) == 2:  # [H W] only: take C from a first conv layer
        first = layers[0] if layers else {}
        if first.get("type") != "conv" or "weights" not in first:
            return None
        dims.append(int(first["weights"][0].shape[2]))
    return dims


# ---------------------------------------------------------------------------------------
# data layout
# ---------------------------------------------------------------------------------------

def labels_from_matlab(labels: Any, n: int) -> np.ndarray:
    """1-based Matlab labels -> 0-based int64, ``-1`` = ignore (Matlab's 0).

    A 1xN (or N-element) vector -> ``(N,)``; an ``H x W x 1 x N`` label map -> ``(N, H, W)``
    (for N = 1 the file gives ``(H, W)``, recognised from ``n``).
    """
    a = np.asarray(labels)
    if a.dtype.kind not in "biuf":
        raise DataError(f"labels must be numeric, got a {a.dtype} array")
    shape = a.shape
    if a.ndim <= 2 and a.size == n and (a.ndim < 2 or min(shape) == 1):
        out = a.reshape(n)
    elif a.ndim == 4 and shape[2] == 1 and shape[3] == n:
        out = a[:, :, 0, :].transpose(2, 0, 1)
    elif n == 1 and a.ndim == 2:
        out = a.reshape((1,) + shape)
    elif n == 1 and a.ndim == 3 and shape[2] == 1:
        out = a[:, :, 0].reshape((1,) + shape[:2])
    else:
        raise DataError(f"labels of shape {shape} fit neither a 1 x {n} vector nor an "
                        f"H x W x 1 x {n} label map")
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)) or np.any(out != np.round(out)) or np.any(out < 0):
        raise DataError("labels must be whole numbers >= 0 (1-based classes; 0 = ignore)")
    return np.ascontiguousarray(out.astype(np.int64) - 1)


def to_nhwc(a: Any) -> np.ndarray:
    """MatConvNet ``H x W x C x N`` (trailing singletons possibly dropped) -> C-contiguous
    ``(N, H, W, C)``; float32 unless the input is float64."""
    arr = np.asarray(a)
    if arr.ndim > 4:
        raise ShapeError(f"an array of shape {arr.shape} has more than 4 dimensions")
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    arr = arr.reshape(arr.shape + (1,) * (4 - arr.ndim))
    return np.ascontiguousarray(arr.transpose(3, 0, 1, 2), dtype=dtype)


def from_nhwc(a: Any) -> np.ndarray:
    """``(N, H, W, C)`` -> MatConvNet's ``H x W x C x N`` (Fortran-ordered, dtype kept)."""
    arr = np.asarray(a)
    if arr.ndim != 4:
        raise ShapeError(f"expected an (N, H, W, C) array, got shape {arr.shape}")
    return np.asfortranarray(arr.transpose(1, 2, 3, 0))
