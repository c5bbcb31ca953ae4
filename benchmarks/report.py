"""Helpers shared by the benchmarks: the machine they ran on, their sections of ``documentation/benchmarks.md``,
and the fresh-process launcher and model/measured ratios of the memory-model checks.

Each benchmark owns one ``## `` section of ``documentation/benchmarks.md`` and replaces only that section,
so that running one benchmark keeps the others' figures.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
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


def run_json_process(code: str, cwd: Path) -> dict:
    """Run ``python -c code`` in a fresh process (a clean memory high-water mark) and return the JSON object
    it prints last; its error output tail if it fails."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_model_ratios(row: dict) -> dict:
    """``saved_ratio`` and ``step_ratio`` (model / measured) of a memory-model check row, in place."""
    row["saved_ratio"] = round(row["model_saved_mib"] / row["measured_saved_mib"], 3)
    row["step_ratio"] = round(row["model_step_mib"] / row["measured_step_mib"], 3)
    return row
