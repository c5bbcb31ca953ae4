"""What the dataset checker reports: :class:`Problem`, :class:`VerifyReport`, and the state the checks share.

A :class:`Problem` names the file, what is wrong and what to do; :class:`VerifyReport` holds all of them
with the number of scans and pairs looked at, and :meth:`VerifyReport.summary` gives the closing line.
:class:`InputCheckError` is what a command raises when it refuses its input: its message lists every problem.
:class:`ProblemCollector` is the base of the check classes in this package: it holds the dataset folder,
the options, ``dataset.json`` once validated and the geometry of every readable scan (channel 0), and
:meth:`ProblemCollector.add` records a problem. The helpers at the end format values for messages
(geometry triples are in ITK (x, y, z) order, spacing and origin in mm, shapes as ``z×y×x``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.raw_format import DatasetFormatError

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        file: the file (or folder) concerned, as a path string.
        message: what is wrong.
        hint: what to do about it.
        severity: ``"error"`` (the dataset cannot be used as is) or ``"warning"``.
    """

    file: str
    message: str
    hint: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}: {prefix}{self.message} — {self.hint}"


@dataclass
class VerifyReport:
    """Result of :func:`~lesionnet.datasets.verify.verify_dataset_report`: the problems and what was looked at."""

    folder: Path
    problems: list
    num_scans: int = 0
    num_pairs: int = 0

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if not p.is_error]

    def summary(self) -> str:
        what = (f"{self.num_scans} scan{'s' if self.num_scans != 1 else ''}, "
                f"{self.num_pairs} pair{'s' if self.num_pairs != 1 else ''}")
        if not self.problems:
            return f"no problems found in {what} ({self.folder.name})"
        n_err, n_warn = len(self.errors), len(self.warnings)
        return (f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} "
                f"({n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}) "
                f"in {what} ({self.folder.name})")


class InputCheckError(DatasetFormatError):
    """Input that a command refuses before doing any work; ``str()`` lists every problem found.

    Attributes:
        problems: the :class:`Problem` list (errors, and with ``strict`` the warnings too).
    """

    def __init__(self, headline: str, problems: list):
        self.problems = list(problems)
        super().__init__(format_problems(headline, self.problems))


def format_problems(headline: str, problems: list) -> str:
    """``headline`` then one indented line per problem (``file: what is wrong — what to do``)."""
    return "\n".join([headline, *(f"  {p}" for p in problems)])


class ProblemCollector:
    """State shared by the checks of one dataset; every check reports through :meth:`add`."""

    def __init__(self, folder: Path, check_voxels: bool, progress: bool):
        self.folder = folder
        self.check_voxels = check_voxels
        self.progress = progress
        self.problems: list[Problem] = []
        self.meta: dict | None = None
        # (split, scan_id) -> Geometry of channel 0 when readable
        self.geometries: dict[tuple, Geometry] = {}
        self.num_pairs = 0
        # smallest extent per axis in mm (tracking scans: what the registration needs), None: voxels only
        self.min_extent_mm: float | None = None

    def add(self, file, message: str, hint: str, severity: str = ERROR) -> None:
        self.problems.append(Problem(str(file), message, hint, severity))

    def report(self, num_scans: int) -> VerifyReport:
        return VerifyReport(self.folder, self.problems, num_scans=num_scans, num_pairs=self.num_pairs)


def describe_difference(a: Geometry, b: Geometry) -> str:
    """How two grids differ: shape (z×y×x), spacing and origin (x, y, z in mm), direction."""
    parts = []
    if a.shape_zyx != b.shape_zyx:
        parts.append(f"shape z×y×x {list(a.shape_zyx)} vs {list(b.shape_zyx)}")
    if not np.allclose(a.spacing_xyz, b.spacing_xyz, atol=1e-4):
        parts.append(f"spacing {format_values(a.spacing_xyz)} vs {format_values(b.spacing_xyz)}")
    if not np.allclose(a.origin_xyz, b.origin_xyz, atol=1e-3):
        parts.append(f"origin {format_values(a.origin_xyz)} vs {format_values(b.origin_xyz)}")
    if not np.allclose(a.direction, b.direction, atol=1e-4):
        parts.append(f"direction {format_values(a.direction)} vs {format_values(b.direction)}")
    return "; ".join(parts) or "tolerance"


def format_values(values) -> str:
    """``(0.8, 0.8, 2)``: numbers in ``%g`` form, in the order given."""
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def list_some(items: list, limit: int = 3) -> str:
    """The first ``limit`` items, then ``and N more``."""
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def first_line(e: BaseException) -> str:
    """First line of an exception's message, or its type name when the message is empty."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
