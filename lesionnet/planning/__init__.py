"""lesionnet.planning — self-configuration.

* :mod:`.fingerprint` — ``extract_fingerprint``: the dataset's figures (``dataset_fingerprint.json``);
* :mod:`.rules` — the generic rules, one small pure function per decision, each with a decision record;
* :mod:`.planner` — ``plan_from_fingerprint``: asks each method it is given for its section of the plan;
* :mod:`.memory` — the memory estimate type and device reserves shared by the methods' memory models;
* :mod:`.plans_io` — memory budget, ``plan_experiment`` (``lesionnet_plans.json``), ``load_plans``.

Each method's own rules live in ``lesionnet/methods/<method>/planning.py``. See documentation/planning.md.
"""
