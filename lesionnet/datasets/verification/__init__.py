"""Parts of the raw-dataset checker; the public entry point is :mod:`lesionnet.datasets.verify`.

* :mod:`.problems`: :class:`~.problems.Problem`, :class:`~.problems.VerifyReport` (with its summary line),
  the state every check adds its problems to, and the helpers that format messages;
* :mod:`.nifti_raw`: raw NIfTI-1/-2 header reading and NaN/inf/truncation detection from the voxel bytes
  (what SimpleITK hides);
* :mod:`.layout`: ``dataset.json``, ``numTraining`` and the image files of ``images{Tr,Ts}/``;
* :mod:`.scans`: one image file (readable, geometry, NaN/inf voxels) and one scan (all channels, same grid);
* :mod:`.masks`: detection masks in ``labelsTr/`` (present, same grid as the image, non-negative integers);
* :mod:`.pairs`: tracking ``pairs{Tr,Ts}.json`` (records, ids, radii, scans referenced, centers inside);
* :mod:`.limits`: the smallest scan the registration can work on (``MIN_SCAN_SIZE_VOXELS``);
* :mod:`.tracking_files`: the same checks on a prediction input folder (pairs file + the scans it names);
* :mod:`.scan_files`: the image checks on a detection prediction input folder (scans only).
"""
