"""Registrations of training scan pairs (affine or deformable priors), computed once and cached.

Cache layout: ``$lesionnet_preprocessed/DatasetXXX_Name/registrations/{A}__{B}.json``, one file per
registered scan pair, holding the registration dict (template ``A`` → search ``B``; its ``kind`` says
affine or deformable, see :mod:`lesionnet.registration.priors`), the signatures (size, mtime) of both
scans and a hash of the registration settings (which include the kind). Priors other than the affine
live in a sub-folder named after their kind (``registrations/deformable/``). The fingerprint run
keeps its sampled registrations apart (``registrations/planning/``); the preprocessing run registers
every training scan pair with the planned prior, reusing what is valid. Training never registers.

By default (``symmetric=True``) each *unordered* scan pair is registered once, the earlier scan id
(sorted) being the template; the reverse direction uses the inverse map (:func:`invert_registration`:
exact for an affine, a point-wise iteration for a deformable prior). That halves the registration
time of datasets whose pairs come in both directions (DLS, Dataset501). ``symmetric=False`` registers
every directed scan pair, as the registration baselines do at inference.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from lesionnet.registration.affine import RegistrationSettings
from lesionnet.registration.priors import prior_from_dict, register_prior, settings_from_dict
from lesionnet.utils.files import write_json
from lesionnet.utils.manifest import (
    file_signature,
    read_json_or_none,
    stable_hash,
)
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)

REGISTRATION_FOLDER = "registrations"
#: settings of the registrations behind the training priors (preprocessing): lesionnet's registration
#: defaults, single-threaded ITK per worker (the pool gives the parallelism, and one thread makes the
#: result bit-for-bit repeatable)
DEFAULT_PRIOR_REGISTRATION = RegistrationSettings(threads=1)


def registration_key(template: str, search: str) -> str:
    """File stem of a cached registration: ``{template}__{search}``."""
    return f"{template}__{search}"


def settings_without_threads(settings) -> dict:
    """``settings.to_dict()`` without the thread counts (they change speed, not the result)."""
    d = settings.to_dict()
    d.pop("threads", None)
    if isinstance(d.get("affine"), dict):
        d["affine"] = {k: v for k, v in d["affine"].items() if k != "threads"}
    return d


def settings_key(settings) -> str:
    """Hash of the settings that change a registration's result (``threads`` excluded)."""
    return stable_hash(settings_without_threads(settings))


def invert_registration(registration):
    """The inverse map (search world → template world) of an affine or deformable registration."""
    return registration.inverse()


def registration_jobs(directed_scan_pairs: Iterable[tuple], symmetric: bool = True) -> list[tuple]:
    """The (template, search) scan pairs to register for ``directed_scan_pairs``, sorted, each once."""
    jobs = set()
    for source, target in directed_scan_pairs:
        if source == target:
            continue
        jobs.add(tuple(sorted((source, target))) if symmetric else (source, target))
    return sorted(jobs)


def _register_worker(job: tuple) -> tuple:
    """Worker: register one scan pair; returns ``(key, registration dict)``."""
    key, template_path, search_path, settings_dict = job
    from lesionnet.datasets.image_io import read_sitk  # imported in the worker
    registration = register_prior(read_sitk(template_path), read_sitk(search_path), settings_from_dict(settings_dict))
    return key, registration.to_dict()


def _cache_record_valid(record, template_sig: dict, search_sig: dict, skey: str) -> bool:
    return (isinstance(record, dict) and record.get("template_signature") == template_sig
            and record.get("search_signature") == search_sig and record.get("settings_key") == skey
            and isinstance(record.get("registration"), dict))


def ensure_registrations(scan_paths: dict, output_folder: str | os.PathLike, directed_scan_pairs: Iterable[tuple],
                         settings=None, num_processes: int = 1,
                         symmetric: bool = True, progress: bool = True,
                         cache_subfolder: str | None = None) -> dict:
    """Make sure every scan pair has a valid cached registration; return them for every directed pair.

    Args:
        scan_paths: ``{scan_id: image path}`` of the raw scans.
        output_folder: the dataset's preprocessed folder (the cache is ``output_folder/registrations/``).
        directed_scan_pairs: ``(source, target)`` scan ids, as the pairs use them.
        settings: registration settings of the prior kind to compute (``RegistrationSettings`` or
            ``DeformableSettings``; default :data:`DEFAULT_PRIOR_REGISTRATION`).
        num_processes: worker processes for the registrations that are missing.
        symmetric: register each unordered pair once and invert for the other direction.
        progress: tqdm bar over the registrations that are computed.
        cache_subfolder: keep this cache apart, in ``registrations/<cache_subfolder>/`` (the
            fingerprint's coarse registrations use ``planning``, so they never replace the priors').

    Returns:
        ``{(source, target): {"registration": the prior, "key": cache key, "inverted": bool}}``.
        Each newly computed registration is written (atomically) as soon as it finishes, so an
        interrupted run keeps what it finished.
    """
    settings = settings or DEFAULT_PRIOR_REGISTRATION
    skey = settings_key(settings)
    folder = Path(output_folder) / REGISTRATION_FOLDER
    if cache_subfolder:
        folder = folder / cache_subfolder
    if settings.kind != "affine":  # each prior kind has its own files (affine ones stay where they were)
        folder = folder / settings.kind
    directed = sorted({(s, t) for s, t in directed_scan_pairs if s != t})
    jobs = registration_jobs(directed, symmetric)
    cached: dict = {}
    todo = []
    for template, search in jobs:
        key = registration_key(template, search)
        template_sig, search_sig = file_signature(scan_paths[template]), file_signature(scan_paths[search])
        record = read_json_or_none(folder / f"{key}.json")
        if _cache_record_valid(record, template_sig, search_sig, skey):
            cached[(template, search)] = record
        else:
            todo.append((key, template, search, template_sig, search_sig))
    if todo:
        logger.info("Registering %d scan pair(s) (%d cached) with %d process(es)", len(todo), len(cached),
                    num_processes)
    by_key = {t[0]: t for t in todo}
    settings_dict = settings.to_dict()
    work = [(key, str(scan_paths[template]), str(scan_paths[search]), settings_dict)
            for key, template, search, _, _ in todo]

    def _store(key: str, registration: dict) -> None:
        _, template, search, template_sig, search_sig = by_key[key]
        record = {"template": template, "search": search, "template_signature": template_sig,
                  "search_signature": search_sig, "settings_key": skey, "registration": registration}
        write_json(folder / f"{key}.json", record)
        cached[(template, search)] = record

    run_jobs(_register_worker, work, num_processes, progress, f"{settings.kind} registration", unit="scan pair",
             on_result=lambda result: _store(*result))

    out = {}
    for source, target in directed:
        if (source, target) in cached:
            record = cached[(source, target)]
            registration, inverted = prior_from_dict(record["registration"]), False
        else:
            record = cached[(target, source)]
            registration, inverted = prior_from_dict(record["registration"]).inverse(), True
        out[(source, target)] = {"registration": registration, "key": registration_key(record["template"],
                                                                                       record["search"]),
                                 "inverted": inverted}
    return out


def prior_error_mm_zyx(prior_center_zyx, target_center_zyx, target_spacing_zyx) -> list:
    """``|prior - target| × spacing`` per axis (mm), (z, y, x); centers are voxel indices of the target."""
    err = np.abs(np.asarray(prior_center_zyx, dtype=np.float64) - np.asarray(target_center_zyx, dtype=np.float64))
    return [float(v) for v in err * np.asarray(target_spacing_zyx, dtype=np.float64)]


__all__ = ["REGISTRATION_FOLDER", "DEFAULT_PRIOR_REGISTRATION", "registration_key", "settings_key",
           "settings_without_threads",
           "invert_registration", "registration_jobs", "ensure_registrations",
           "prior_error_mm_zyx"]
