"""lesionnet.planning — self-configuration.

* :mod:`.fingerprint` — ``extract_fingerprint``: the dataset's figures (``dataset_fingerprint.json``);
* :mod:`.planner` — one pure rule per decision, ``plan_from_fingerprint``;
* :mod:`.memory_model` — analytic training-memory models (TLT checked against measurements;
  DLT and LN-Tracker are estimates until those networks exist);
* :mod:`.plans_io` — memory budget, ``plan_experiment`` (``lesionnet_plans.json``), ``load_plans``.

See documentation/planning.md.
"""
