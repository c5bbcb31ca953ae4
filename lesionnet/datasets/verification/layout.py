"""Dataset layout checks: ``dataset.json``, ``numTraining`` and the image files of ``images{Tr,Ts}/``.

:class:`DatasetLayoutChecks` validates ``dataset.json`` (an unusable one ends the whole check), compares
``numTraining`` with what is on disk (warning only) and lists the scans of a split as
``scan_id -> {channel: path}`` from the ``{scan_id}_{channel:04d}{file_ending}`` file names, reporting
leftover temporary files, odd names and channels that ``channel_names`` does not list.
"""
from __future__ import annotations

import re
from pathlib import Path

from lesionnet.datasets.raw_format import DatasetFormatError, validate_dataset_json
from lesionnet.datasets.verification.problems import WARNING, ProblemCollector, first_line
from lesionnet.utils.files import TEMP_PREFIX, load_json


class DatasetLayoutChecks(ProblemCollector):
    """Checks of ``dataset.json`` and of the image file names of a split."""

    def _check_dataset_json(self) -> bool:
        path = self.folder / "dataset.json"
        if not path.is_file():
            self.add(path, "missing", "every dataset folder needs a dataset.json with name, task, channel_names, "
                     "file_ending and numTraining (see documentation/dataset_format.md)")
            return False
        try:
            meta = load_json(path)
        except (ValueError, OSError) as e:
            self.add(path, f"not valid JSON ({first_line(e)})", "fix the syntax or regenerate the file")
            return False
        try:
            self.meta = validate_dataset_json(meta, path)
        except DatasetFormatError as e:
            message = str(e)
            prefix = f"{path}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
            self.add(path, message.rstrip("."), "fix dataset.json; see documentation/dataset_format.md")
            return False
        if not isinstance(self.meta["name"], str) or not self.meta["name"]:
            self.add(path, "'name' must be a non-empty string", "set it, e.g. \"name\": \"MyData\"")
        n = self.meta["numTraining"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            self.add(path, f"'numTraining' must be a non-negative integer, got {n!r}",
                     "set it to the number of scans in imagesTr/")
        return True

    def _check_num_training(self, task: str, num_tr_scans: int, num_tr_pairs: int) -> None:
        n = self.meta["numTraining"]
        if isinstance(n, bool) or not isinstance(n, int):
            return  # already reported
        if n == num_tr_scans or (task == "tracking" and n == num_tr_pairs and num_tr_pairs):
            return
        counted = f"{num_tr_scans} scans in imagesTr/" + (f" and {num_tr_pairs} pairs in pairsTr.json"
                                                         if task == "tracking" else "")
        self.add(self.folder / "dataset.json", f"numTraining is {n} but there are {counted}",
                 f"set numTraining to {num_tr_scans}", WARNING)

    def _scan_files(self, split: str, ending: str, num_channels: int) -> dict:
        """scan_id -> {channel: path} for the files of ``images{split}/``; odd files are reported."""
        folder = self.folder / f"images{split}"
        scans: dict[str, dict[int, Path]] = {}
        if not folder.is_dir():
            return scans
        pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + r"$")
        for path in sorted(folder.iterdir()):
            name = path.name
            if name.startswith(TEMP_PREFIX):
                self.add(path, "leftover temporary file of an interrupted write",
                         "delete it (and re-run the step that wrote the folder)", WARNING)
                continue
            if name.startswith(".") or path.is_dir():
                continue
            match = pattern.match(name)
            if not match:
                self.add(path, f"file name does not follow {{scan_id}}_{{channel:04d}}{ending}",
                         f"rename it (e.g. case1_0000{ending}) or remove it; dataset.json says file_ending "
                         f"is '{ending}'", WARNING)
                continue
            scan_id, channel = match.group(1), int(match.group(2))
            if channel >= num_channels:
                self.add(path, f"channel {channel} is not in channel_names (dataset.json lists {num_channels})",
                         "add the channel to channel_names in dataset.json or remove the file")
                continue
            scans.setdefault(scan_id, {})[channel] = path
        return scans
