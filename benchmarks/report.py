"""Helpers shared by the benchmarks: the machine they ran on, and their sections of ``documentation/benchmarks.md``.

Each benchmark owns one ``## `` section of ``documentation/benchmarks.md`` and replaces only that section,
so that running one benchmark keeps the others' figures.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import SimpleITK as sitk

from lesionnet.utils.files import write_text

TITLE = "# Benchmarks"


def machine_description() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, Python "
            f"{platform.python_version()}, SimpleITK {sitk.Version.VersionString()}")


def replace_section(path: Path, heading: str, body: str) -> None:
    """Write ``## heading`` + ``body`` into the Markdown file, replacing that section if present (else appended)."""
    text = path.read_text() if path.exists() else TITLE + "\n"
    section = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    write_text(path, text.rstrip() + "\n")
