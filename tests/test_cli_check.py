"""`layerspec check`: the table, --json, the fit explanation, --diagnose, and error exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from layerspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_every_spec_passes_check(capsys, name):
    rc, out, err = run(capsys, "check", str(SPECS / name))
    assert rc == 0, err
    assert "total" in out


def test_lenet_table_numbers(capsys):
    rc, out, _ = run(capsys, "check", str(SPECS / "lenet_mnist.yaml"), "--json")
    assert rc == 0
    data = json.loads(out)
    outputs = [row["output"] for row in data["layers"]]
    assert outputs == [[24, 24, 20], [12, 12, 20], [8, 8, 50], [4, 4, 50], [1, 1, 500],
                       [1, 1, 500], [1, 1, 10], None]
    assert data["total_params"] == 20 * 25 + 20 + 50 * 500 + 50 + 800 * 500 + 500 + 5010
    # receptive field of the 500-unit layer covers the whole 28x28 image
    assert data["layers"][4]["rf_size"] == [28, 28]
    assert data["layers"][1]["rf_stride"] == [2, 2]
    # BRIEF §7: 0.005 GFLOP per image forward
    assert 0.0045e9 < data["total_flops"] < 0.0055e9


def test_seed_cnn_flops_match_brief(capsys):
    rc, out, _ = run(capsys, "check", str(SPECS / "seed_cnn.yaml"), "--json")
    assert rc == 0
    assert abs(json.loads(out)["total_flops"] / 1e9 - 26.5) < 0.1


def test_misfit_names_layer_and_sizes(capsys):
    rc, out, err = run(capsys, "check", str(SPECS / "seed_cnn.yaml"), "--input", "32,32,3")
    assert rc == 2
    first = err.splitlines()[0]
    assert first.startswith(f"{SPECS / 'seed_cnn.yaml'}:")
    assert "error: layer 17 (conv 'layer17') does not fit its input 1x1x256" in first
    assert "filter extent 4" in first
    assert "note: input height: H >= 313 fits; output height 1 for H = 313..344" in err
    assert "Traceback" not in err


def test_diagnose_warns_about_dead_activations(capsys):
    rc, out, err = run(capsys, "check", str(SPECS / "seed_cnn.yaml"), "--diagnose")
    assert rc == 0
    assert "activations die at layer 5 (relu 'layer5')" in err
    assert "layer 4 (conv 'layer4') has filters with mean" in err


def test_diagnose_is_quiet_on_a_healthy_net(capsys):
    rc, out, err = run(capsys, "check", str(SPECS / "lenet_mnist.yaml"), "--diagnose")
    assert rc == 0 and "warning" not in err
    assert "zeros" in out


def test_diagnose_runs_bnorm_nets_on_batch_statistics(capsys):
    """Untrained bnorm moments are zeros (MatConvNet's init): mode 'test' would divide by
    them, so a net with bnorm layers is diagnosed in mode 'normal' — finite, normalised."""
    rc, out, err = run(capsys, "check", str(SPECS / "lenet_mnist_bn.yaml"), "--diagnose")
    assert rc == 0 and "NaN" not in err and "warning" not in err, err
    assert "mode 'normal'" in out
    diag = out.split("activations at initialisation")[1]
    bn_rows = [line.split() for line in diag.splitlines() if " bnorm " in f" {line} "]
    assert bn_rows and all(abs(float(r[3])) < 1e-3 and abs(float(r[4]) - 1) < 0.05
                           for r in bn_rows), out


def test_spec_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - {type: pool, pool: 2, strid: 2}\n")
    proc = subprocess.run([sys.executable, "-m", "layerspec", "check", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"{bad}:2:27: error: pool: unknown field 'strid' "
                                   "(did you mean 'stride'?)")


def test_missing_file_exit_2(capsys, tmp_path):
    rc, _, err = run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert rc == 2 and "not found" in err


def test_bad_input_option(capsys):
    rc, _, err = run(capsys, "check", str(SPECS / "lenet_mnist.yaml"), "--input", "28,28")
    assert rc == 2 and "--input" in err
