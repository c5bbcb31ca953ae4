"""What a method's ``build(section)`` returns (DETR's ``build(args)`` shape): the network, the loss and the
decoding, made together from one plan section."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class BuiltModel:
    """A method's model, built from its plan section.

    Attributes:
        network: the ``torch.nn.Module``; the trainer calls ``network(**{k: batch[k] for k in input_keys})``.
        criterion: ``criterion(outputs, batch) -> {"loss": scalar tensor to minimise, name: scalar, ...}``,
            ``batch`` holding every array of the training batch as a tensor on the compute device.
        decode: ``decode(outputs)``: the network's outputs → the method's predictions (e.g. centers).
        input_keys: the batch keys the network takes, by parameter name.
    """

    network: torch.nn.Module
    criterion: Callable[[dict, dict], dict]
    decode: Callable[[dict], torch.Tensor]
    input_keys: tuple


__all__ = ["BuiltModel"]
