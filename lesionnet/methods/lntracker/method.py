"""The ``lntracker`` method: its plan section (and with it the native-z preprocessing of detection
datasets) and memory estimate. Neither trainable nor predicting yet (the network is not implemented),
and ``lesionnet_train`` / ``lesionnet_predict`` say so."""
from __future__ import annotations

from lesionnet.methods.base import Method
from lesionnet.methods.lntracker import memory, planning


class LNTrackerMethod(Method):
    name = "lntracker"
    task = "detection"
    description = "LN-Tracker (CVPR 2025), 3D detection by tracking along z: planned only, not implemented yet"
    memory_driven_keys = planning.MEMORY_DRIVEN_KEYS

    def plan(self, context) -> dict:
        return planning.plan(context)

    def memory(self, section: dict, device: str):
        return memory.training_step_memory(section["patch_size_yx"], section["batch_size"], section["slices_per_side"],
                                           section["num_queries"], section["hidden_dim"], section["encoder_layers"],
                                           section["decoder_layers"], device=device)

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        spacing = "x".join("native" if v is None else f"{v:.2f}" for v in (data_configuration or {}).get(
            "target_spacing_zyx", []))
        return (f"lntracker: spacing {spacing} mm, patch {section['patch_size_yx']}, {section['num_input_slices']} "
                f"slices, {section['num_queries']} queries, batch {section['batch_size']} (planned only; memory "
                "model unverified)")


LNTRACKER = LNTrackerMethod()

__all__ = ["LNTrackerMethod", "LNTRACKER"]
