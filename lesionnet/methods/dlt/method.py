"""The ``dlt`` method: its plan section and memory estimate. It is registered so that DLT's sizes are
planned and reviewable next to TLT's; it is neither trainable nor predicting yet (the network is not
implemented), and ``lesionnet_train`` / ``lesionnet_predict`` say so."""
from __future__ import annotations

from lesionnet.methods.base import Method
from lesionnet.methods.dlt import memory, planning


class DLTMethod(Method):
    name = "dlt"
    task = "tracking"
    description = "Deep Lesion Tracker (CVPR 2021): planned only, the network is not implemented yet"
    memory_driven_keys = planning.MEMORY_DRIVEN_KEYS

    def plan(self, context) -> dict:
        return planning.plan(context)

    def memory(self, section: dict, device: str):
        return memory.training_step_memory(section["template_patch_size_zyx"], section["search_patch_size_zyx"],
                                           section["batch_size"], section["growth_rate"], section["fpn_width"],
                                           device=device)

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        return (f"dlt: patch {section['search_patch_size_zyx']}, growth {section['growth_rate']}, "
                f"fpn {section['fpn_width']}, batch {section['batch_size']} (planned only; memory model unverified)")


DLT = DLTMethod()

__all__ = ["DLTMethod", "DLT"]
