"""The method interface: what a method declares, in one place.

A method is an object in :data:`lesionnet.methods.REGISTRY`. The generic layers (planner assembly,
trainer, prediction, command-line tools, demo) read only the attributes below and never a method's
name; adding a method means one sub-package of ``lesionnet/methods/`` and one registry line (see
``documentation/architecture.md``, "How to add a method").

Every method declares (class attributes with defaults here):

* ``name``, ``task`` (``"tracking"`` or ``"detection"``), ``description`` (one line, for ``-h``);
* ``plan(context) -> dict | None``: its section of ``lesionnet_plans.json`` from a
  :class:`lesionnet.planning.planner.PlanningContext` (with ``data_identifier`` and
  ``data_configuration`` when it needs preprocessed data, and ``decisions``); None plans nothing;
* ``memory(section, device)``: the memory model of one training step for a section, or None;
* ``summary(section, data_configuration)``: one line for ``lesionnet_plan_and_preprocess``;
* ``memory_driven_keys``: the section's keys (dotted for nested ones) that grow with the budget.

A method that can be trained has ``trainable = True`` and:

* ``presets``: ``{"plan": {}, "small": {...}, "tiny": {...}}``, each a plan override merged into the
  section (:func:`lesionnet.utils.mappings.deep_merge`);
* ``selection_metric``: ``(metric, "min" | "max")`` of its validation, which picks ``checkpoint_best``;
* ``build(section) -> BuiltModel``: network, criterion and decoding from a section;
* ``training_defaults(section) -> dict``: :class:`~lesionnet.training.config.TrainingConfig` values
  (batch size from the plan, the augmentation settings);
* ``batches(data, item_ids, section, config, first_batch)``: its training batch stream;
* ``validate(model, data, item_ids, section, device) -> dict``: validation metrics; optionally split in
  ``validation_records(model, data, item_ids, section, device) -> list`` (picklable, per item) and
  ``validation_summary(records) -> dict`` with ``validate`` their composition: data-parallel training then
  validates a shard of the items in each process and summarises the gathered records once (without the
  split, rank 0 validates every item while the others wait);
* ``demo_training``: the training settings ``lesionnet_demo`` uses for it on a CPU;
* ``plan_section``: for a variant of another method (e.g. DLT's training modes), the name of the plan section it
  trains and predicts from; None (default) for its own section. A variant is not planned separately;
* ``option_variants``: ``{option: {value: method name}}``, the variants a ``lesionnet_train --option value``
  selects (e.g. DLT's ``--mode ssl`` -> ``dlt_ssl``), shared by the variants of one method;
* ``demo_variants``: ``{suffix: predictor options}``, further rows of the comparisons (demo, benchmarks)
  made with the same trained model and other predictor settings (e.g. a paper's baseline).

A method that can predict has ``predicts = True`` and ``predictor(request) -> CaseTracker`` (a
:class:`lesionnet.inference.model_request.PredictorRequest` in, a per-case tracker or per-scan detector out), and
``makes_heatmaps`` when its predictor can write heatmaps; ``uses_plan`` when, untrained, it still needs
its section of the dataset's plans at prediction (``request.plan``; e.g. the matcher's resolution).
"""
from __future__ import annotations

TASKS = ("tracking", "detection")
#: what a trainable method must define, and what a predicting one must
TRAINING_PARTS = ("build", "training_defaults", "batches", "validate")
PREDICTION_PARTS = ("predictor",)


class Method:
    """Defaults of the declarative parts; a method subclasses it and sets what applies (see the module
    docstring). Nothing here is abstract: a method without training or prediction simply leaves
    ``trainable`` / ``predicts`` False."""

    name: str = ""
    task: str = ""
    description: str = ""
    trainable: bool = False
    predicts: bool = False
    makes_heatmaps: bool = False
    uses_plan: bool = False
    presets: dict = {"plan": {}}
    selection_metric: tuple | None = None
    memory_driven_keys: tuple = ()
    demo_training: dict | None = None
    demo_variants: dict = {}
    plan_section: str | None = None
    option_variants: dict = {}

    def plan(self, context) -> dict | None:
        """Its section of the plan; the default plans nothing (the method runs on the raw scans)."""
        return None

    def memory(self, section: dict, device: str):
        """Memory estimate of one training step for ``section`` on ``device`` (``"cpu"``, ``"cuda"``); the
        default has none."""
        return None

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        """One line about the planned section, for the command line."""
        return f"{self.name}: planned"

    def __repr__(self) -> str:
        return f"<method {self.name} ({self.task})>"


def check_method(method) -> None:
    """Raise ``ValueError`` naming the method when it does not declare what it claims (registry check)."""
    name = getattr(method, "name", None)
    if not name or not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{method!r}: a method needs a name that is a Python identifier (used in folder names).")
    if getattr(method, "task", None) not in TASKS:
        raise ValueError(f"method '{name}': task must be one of {TASKS}, got {getattr(method, 'task', None)!r}.")
    if getattr(method, "trainable", False):
        missing = [p for p in TRAINING_PARTS if not callable(getattr(method, p, None))]
        metric = getattr(method, "selection_metric", None)
        if missing:
            raise ValueError(f"method '{name}' is trainable but does not define {missing}.")
        if not (isinstance(metric, tuple) and len(metric) == 2 and metric[1] in ("min", "max")):
            raise ValueError(f"method '{name}': selection_metric must be (metric, 'min' | 'max'), got {metric!r}.")
        if "plan" not in getattr(method, "presets", {}):
            raise ValueError(f"method '{name}': presets must include 'plan' (the planned configuration).")
    if getattr(method, "predicts", False):
        missing = [p for p in PREDICTION_PARTS if not callable(getattr(method, p, None))]
        if missing:
            raise ValueError(f"method '{name}' predicts but does not define {missing}.")


__all__ = ["TASKS", "Method", "check_method"]
