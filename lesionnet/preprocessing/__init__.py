"""lesionnet.preprocessing — resampling, normalisation, storage and tracking priors.

* :mod:`.preprocess` — ``preprocess_dataset`` (blosc2 arrays + JSON sidecars + ``pairs.json``);
* :mod:`.loading` — ``PreprocessedDataset``, ``load_case``, ``load_tracking_pairs``, crops and
  on-the-fly Gaussian maps for the trainers;
* :mod:`.resampling`, :mod:`.normalization` — the image operations;
* :mod:`.registration_priors` — the cached affine registrations of training scan pairs;
* :mod:`.manifest` — file signatures and write-if-changed (idempotent re-runs).

See documentation/planning.md.
"""
