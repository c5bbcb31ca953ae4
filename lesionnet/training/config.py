"""Training hyper-parameters: one dataclass, read from the plan and the command line, stored in every
checkpoint (so ``--c`` resumes with exactly the settings the run started with)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lesionnet.utils.dataclass_dict import dataclass_from_dict

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("poly", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainingConfig:
    """What the shared trainer needs to know (units in the names).

    Attributes:
        num_epochs: epochs of ``iterations_per_epoch`` optimiser steps each.
        batch_size: samples per step (default: the plan's).
        optimizer: ``adam`` (the trackers' papers), ``adamw`` or ``sgd`` (momentum 0.99, nesterov).
        learning_rate: initial learning rate (1e-4 with Adam, the trackers' papers).
        lr_schedule: ``poly`` (``lr · (1 - epoch / num_epochs) ** 0.9``, nnU-Net) or ``constant``.
        grad_clip_norm: gradient-norm clipping (0: off).
        num_workers: batchgenerators worker processes for the batches (0: build them in this process).
        seed: seeds the network initialisation, the batch stream and dropout; with ``num_workers`` and
            the thread count fixed a CPU run is bit-for-bit repeatable.
        max_val_pairs: validate on at most this many items (pairs, scans) of the fold (a fixed subset;
            None: all).
        precision: ``fp32``, or ``bf16``: the forward pass and the loss under bfloat16 autocast (on CUDA
            devices that support it; elsewhere the run trains in fp32 and says so).
        compile: ``torch.compile`` the network for the training steps (on CUDA; elsewhere off, with a
            warning). Validation and checkpoints use the plain network.
        augmentation: the method's augmentation settings, as a plain dict that the method reads (e.g.
            :class:`lesionnet.training.pair_augmentation.PairAugmentation`); the method fills in its
            defaults (``Method.training_defaults``).
    """

    num_epochs: int = 100
    iterations_per_epoch: int = 250
    batch_size: int = 2
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "poly"
    grad_clip_norm: float = 12.0
    num_workers: int = 0
    seed: int = 0
    max_val_pairs: int | None = None
    precision: str = "fp32"
    compile: bool = False
    augmentation: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.augmentation, dict):
            raise ValueError(f"augmentation must be a dict of the method's settings, got {self.augmentation!r}")
        for name in ("num_epochs", "iterations_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        return dataclass_from_dict(cls, d, "training setting")

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based)."""
        if self.lr_schedule == "constant":
            return float(self.learning_rate)
        return float(self.learning_rate * (1.0 - min(epoch, self.num_epochs) / self.num_epochs) ** 0.9)
