"""The tiny training spec several test modules run end to end (8x8x1 synthetic images, three
classes, a conv-relu-pool-conv net that trains in well under a second)."""

from __future__ import annotations


def tiny_spec(name: str = "tiny", lr: str = "0.05", epochs: int = 3, dropout: bool = False,
              solver: str | None = None) -> str:
    """The spec's YAML text: ``dropout`` adds a dropout layer (rate 0.2) after the pool,
    ``solver`` names cnn_train's solver (default sgd)."""
    drop = "  - {type: dropout, rate: 0.2}\n" if dropout else ""
    train = f"batchSize: 10, numEpochs: {epochs}, learningRate: {lr}"
    if solver:
        train += f", solver: {solver}"
    return (f"name: {name}\n"
            "input: [8, 8, 1]\n"
            "layers:\n"
            "  - type: conv\n"
            "    weights: [\"0.1*randn(3,3,1,4,'single')\", \"zeros(1,4,'single')\"]\n"
            "  - {type: relu}\n"
            "  - {type: pool, method: max, pool: [2, 2], stride: 2}\n"
            f"{drop}"
            "  - type: conv\n"
            "    weights: [\"0.1*randn(3,3,4,3,'single')\", \"zeros(1,3,'single')\"]\n"
            "  - {type: softmaxloss}\n"
            f"train: {{{train}}}\n"
            "data: {dataset: synthetic, classes: 3, train: 60, test: 30}\n")
