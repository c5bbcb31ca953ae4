"""DLT's training data (center augmentation, self-supervised pairs, the three modes) and the tiny DLT through
``lesionnet_train`` (exact resume with ``--c``) and ``lesionnet_predict``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASET_501

from lesionnet.methods import REGISTRY
from lesionnet.methods.dlt.maps import lesion_gaussian
from lesionnet.methods.dlt.sampling import (
    CenterShiftSampler,
    DLTBatchMaker,
    ScanLesion,
    SelfSupervisedSampler,
    center_shift_zyx,
    scan_lesions,
)
from lesionnet.planning.plans_io import load_plans
from lesionnet.preprocessing.loading import PreprocessedDataset, centered_start_zyx, crop_zyx
from lesionnet.training.batch_stream import sample_seed, whole_batch_draws
from lesionnet.training.checkpoints import FINAL, LATEST, load_checkpoint
from lesionnet.training.pair_augmentation import PairAugmentation
from lesionnet.training.run_training import configuration_with_preset, train_model, training_output_folder

DLT = REGISTRY["dlt"]
TINY = dict(num_epochs=2, iterations_per_epoch=2, batch_size=2, learning_rate=1e-3, seed=1, max_val_pairs=3)


def _section(preset="tiny") -> dict:
    return configuration_with_preset(DLT, load_plans(501)["configurations"]["dlt"], preset)


def _data() -> PreprocessedDataset:
    return PreprocessedDataset(501, _section()["data_identifier"])


def _peak_zyx(volume: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(int(np.argmax(volume)), volume.shape), dtype=np.float64)


def test_center_shift_is_uniform_in_the_quarter_radius_ball():
    rng = np.random.default_rng(0)
    spacing = np.array([2.0, 1.0, 0.5])
    shifts_mm = np.array([center_shift_zyx(8.0, spacing, rng) * spacing for _ in range(4000)])
    lengths = np.linalg.norm(shifts_mm, axis=1)
    assert lengths.max() <= 2.0 + 1e-9
    # uniform in the ball: P(|Δ| <= R/2) = 1/8
    assert abs((lengths <= 1.0).mean() - 0.125) < 0.02
    assert np.all(np.abs(shifts_mm.mean(axis=0)) < 0.05)


def test_supervised_samples_carry_the_moved_template_center(env_501):
    data, section = _data(), _section()
    sampler = CenterShiftSampler(data.cached_case, section["template_patch_size_zyx"],
                                 section["search_patch_size_zyx"], search_offset_fraction=0.25)
    pair = data.pairs()[0]
    sample = sampler.sample(pair, sample_seed(3, 0, 0)[0])      # sample 0 of batch 0 of seed 3
    center = sample["template_center_zyx"]
    spacing = np.asarray(data.cached_case(pair.source).geometry.spacing_zyx)
    moved_mm = np.linalg.norm((center + centered_start_zyx(pair.source_center_zyx, section["template_patch_size_zyx"])
                               - np.asarray(pair.source_center_zyx)) * spacing)
    assert moved_mm <= 0.25 * pair.source_radius_mm + 1.0          # within the ball (plus the crop's rounding)
    # the template Gaussian G(μ_t, 4 r_t) peaks at the template center
    assert np.abs(_peak_zyx(sample["template_gaussian"][0]) - center).max() <= 0.5 + 1e-9
    # flips move the template center with the images (the batch maker's augmentation)
    maker = DLTBatchMaker("supervised", sampler, None, augmentation=PairAugmentation(flip_probability=1.0))
    batch = maker([pair], whole_batch_draws(1, 3))
    flipped = batch["template_center_zyx"][0]
    np.testing.assert_allclose(flipped, np.asarray(section["template_patch_size_zyx"]) - 1 - center, atol=1e-5)
    assert np.abs(_peak_zyx(batch["template_gaussian"][0, 0]) - flipped).max() <= 0.5 + 1e-5


def test_the_search_prior_follows_the_moved_template_center_when_asked(env_501):
    """prior_follows_shift: the search prior is projected from the moved center through the pair's
    registration (as at prediction); by default it stays the pair's stored prior."""
    from lesionnet.registration.anatomy_maps import project_lesion

    data, section = _data(), _section()
    pair = data.pairs()[0]
    for follows in (False, True):
        sampler = CenterShiftSampler(data.cached_case, section["template_patch_size_zyx"],
                                     section["search_patch_size_zyx"], center_shift_fraction=1.0,
                                     prior_follows_shift=follows)
        seen = []
        inner = sampler.pair_sampler.sample
        sampler.pair_sampler.sample = lambda p, rng: seen.append(p) or inner(p, rng)
        sampler.sample(pair, np.random.default_rng(5))
        [used] = seen
        assert used.source_center_zyx != pair.source_center_zyx
        expected, _ = project_lesion(pair.registration, used.source_center_zyx, pair.source_radius_mm,
                                     data.cached_case(pair.source).geometry, data.cached_case(pair.target).geometry)
        if follows:
            np.testing.assert_allclose(used.prior_center_zyx, expected)
            assert not np.allclose(used.prior_center_zyx, pair.prior_center_zyx)
        else:
            assert used.prior_center_zyx == pair.prior_center_zyx


def test_self_supervised_pairs_need_only_scans_and_lesion_centers(env_501):
    """SSL batches come from (scan, center, radius) alone — no pair, no registration — and, without spatial
    augmentation, the search patch shows the template's lesion at the target center."""
    data, section = _data(), _section()
    case = data.cached_case(data.scan_ids[0])
    lesion = ScanLesion(data.scan_ids[0], tuple(np.asarray(case.image.shape) / 2.0), 6.0)
    size = section["search_patch_size_zyx"]
    plain = SelfSupervisedSampler(data.cached_case, section["template_patch_size_zyx"], size,
                                  center_shift_fraction=0.0, probability=0.0)
    sample = plain.sample(lesion, np.random.default_rng(0))
    target = sample["target_center_zyx"]
    assert np.all(target >= 0) and np.all(target <= np.asarray(size) - 1)
    # the same anatomy: the search patch around the target equals the scan around the lesion center
    start = np.round(np.asarray(lesion.center_zyx) - target).astype(int)
    np.testing.assert_allclose(sample["search"][0], crop_zyx(case.image, start, size), atol=1e-4)
    np.testing.assert_allclose(sample["search_prior"][0], np.clip(
        lesion_gaussian(size, np.asarray(lesion.center_zyx) - start, 6.0, case.geometry.spacing_zyx), 0, 1),
        atol=1e-4)
    # with the paper's augmentation (elastic, rotation, scale: p = 0.5 each) the prior still peaks at the target
    augmented = SelfSupervisedSampler(data.cached_case, section["template_patch_size_zyx"], size, probability=1.0)
    for seed in range(3):
        s = augmented.sample(lesion, np.random.default_rng(seed))
        assert np.linalg.norm(_peak_zyx(s["search_prior"][0]) - s["target_center_zyx"]) < 3.0
    # a batch in "ssl" mode from scan lesions only
    maker = DLTBatchMaker("ssl", None, augmented, [lesion])
    batch = maker([lesion, lesion], whole_batch_draws(2, 1))
    assert batch["search"].shape == (2, 1, *size) and batch["self_supervised"] == 1
    assert all(i.startswith("ssl:") for i in batch["pair_ids"])


def test_dlt_ssl_training_batches_do_not_use_pair_annotations(env_501):
    """dlt_ssl's training stream is the same when every pair's correspondence is destroyed (targets shuffled
    among the pairs, priors moved): it reads only scans and the lesion centers of each scan."""
    from dataclasses import replace

    from lesionnet.training.config import TrainingConfig

    data = _data()
    method = REGISTRY["dlt_ssl"]
    pairs = data.pairs()

    def rotate(items, scan: str, fields: tuple) -> list:
        """Each pair takes ``fields`` from the next pair on the same ``scan``: the scan's lesions stay, the
        correspondences go."""
        groups: dict = {}
        for index, pair in enumerate(items):
            groups.setdefault(getattr(pair, scan), []).append(index)
        out = list(items)
        for group in groups.values():
            for a, b in zip(group, group[1:] + group[:1]):
                out[a] = replace(out[a], **{f: getattr(items[b], f) for f in fields})
        return out

    scrambled = rotate(rotate(pairs, "target", ("target_center_zyx", "target_radius_mm")), "source",
                       ("source_center_zyx", "source_radius_mm"))
    scrambled = {p.pair_id: replace(p, prior_center_zyx=(0.0, 0.0, 0.0), prior_radius_mm=1.0) for p in scrambled}
    assert sum(scrambled[p.pair_id].target_center_zyx != p.target_center_zyx for p in pairs) > len(pairs) // 2

    class Scrambled:
        cached_case = data.cached_case

        def pairs_by_id(self, ids):
            return [scrambled[i] for i in ids]

    ids = [p.pair_id for p in pairs]
    config = TrainingConfig(**{**method.training_defaults(_section()), "batch_size": 2, "seed": 0})
    streams = [method.batches(source, ids, _section(), config, 0) for source in (data, Scrambled())]
    for _ in range(2):
        a, b = (next(stream) for stream in streams)
        assert a["self_supervised"] == b["self_supervised"] == 1
        for key in ("template", "template_gaussian", "search", "search_prior", "target_center_zyx"):
            np.testing.assert_array_equal(a[key], b[key])
    for stream in streams:
        stream.close()


def test_anatomy_dropout_blanks_the_search_prior_of_that_share_of_samples(env_501):
    data, section = _data(), _section()
    sampler = CenterShiftSampler(data.cached_case, section["template_patch_size_zyx"],
                                 section["search_patch_size_zyx"])
    pairs = data.pairs()[:8]
    plain = DLTBatchMaker("supervised", sampler, None, augmentation=PairAugmentation(enabled=False))
    half = DLTBatchMaker("supervised", sampler, None, augmentation=PairAugmentation(enabled=False),
                         anatomy_dropout=0.5)
    a, b = plain(pairs, whole_batch_draws(8, 4)), half(pairs, whole_batch_draws(8, 4))
    blank = [not b["search_prior"][i].any() for i in range(len(pairs))]
    assert 0 < sum(blank) < len(pairs) and not any(not a["search_prior"][i].any() for i in range(len(pairs)))
    for i, is_blank in enumerate(blank):
        np.testing.assert_array_equal(a["search"][i], b["search"][i])
        if not is_blank:
            np.testing.assert_array_equal(a["search_prior"][i], b["search_prior"][i])


def test_partial_training_options_keep_the_variants_mode():
    """An augmentation dict that sets only some options (train_model(..., augmentation={...})) trains the
    variant's mode, not the supervised default; a conflicting mode is an error naming the right variant."""
    from lesionnet.methods.dlt.method import training_options
    from lesionnet.training.config import TrainingConfig

    config = TrainingConfig(augmentation={"prior_follows_shift": True})
    assert training_options(config, "mix")["mode"] == "mix" and training_options(config)["mode"] == "supervised"
    assert training_options(config, "mix")["prior_follows_shift"] is True
    with pytest.raises(ValueError, match="train 'dlt_ssl' instead"):
        training_options(TrainingConfig(augmentation={"mode": "ssl"}), "mix")


def test_mix_mode_switches_to_self_supervised_batches_at_tau(env_501):
    data, section = _data(), _section()
    pairs = data.pairs()
    supervised = CenterShiftSampler(data.cached_case, section["template_patch_size_zyx"],
                                    section["search_patch_size_zyx"])
    ssl = SelfSupervisedSampler(data.cached_case, section["template_patch_size_zyx"], section["search_patch_size_zyx"])
    lesions = scan_lesions(pairs)
    assert len(lesions) >= len({p.source for p in pairs})
    maker = DLTBatchMaker("mix", supervised, ssl, lesions, PairAugmentation(enabled=False), ssl_probability=0.25)
    kinds = [float(maker(pairs[:1], whole_batch_draws(1, seed))["self_supervised"]) for seed in range(40)]
    assert 0.1 <= np.mean(kinds) <= 0.45
    with pytest.raises(ValueError, match="scan lesions"):
        DLTBatchMaker("mix", supervised, ssl, [])


def test_tiny_dlt_trains_resumes_exactly_and_predicts(env_501, tmp_path, capsys):
    from lesionnet.cli import predict as predict_cli
    from lesionnet.cli import train as train_cli
    from lesionnet.datasets.prediction_format import read_predictions

    base = ["501", "dlt", "0", "--preset", "tiny", "--iterations", "2", "--batch_size", "2", "--lr", "1e-3",
            "--seed", "1", "--max_val_pairs", "3", "--no_progress", "--mode", "mix"]
    assert train_cli.main(base + ["--epochs", "2"]) == 0
    # --mode mix selects the variant dlt_mix: its own results folder, the dlt plan section
    out = training_output_folder(DATASET_501, "dlt_mix", 0)
    whole = load_checkpoint(out / FINAL)
    assert whole["method"] == "dlt_mix" and whole["training_config"]["augmentation"]["mode"] == "mix"
    assert whole["configuration"] == _section()
    assert "val_med_mm" in whole["history"][-1] and "train_distance_mm" in whole["history"][-1]
    # the same run stopped after epoch 1 and continued with --c ends with the same weights
    other = tmp_path / "other"
    train_model(501, REGISTRY["dlt_mix"], 0, preset="tiny", progress=False, output_folder=other,
                **{**TINY, "num_epochs": 1})
    checkpoint = load_checkpoint(other / FINAL)
    checkpoint["training_config"]["num_epochs"] = 2            # as if it had been started for 2 epochs
    torch.save(checkpoint, other / LATEST)
    (other / FINAL).unlink()
    train_model(501, REGISTRY["dlt_mix"], 0, preset="tiny", progress=False, output_folder=other, resume=True, **TINY)
    resumed = load_checkpoint(other / FINAL)["model"]
    assert all(torch.equal(whole["model"][k], resumed[k]) for k in resumed)
    # a method without modes refuses --mode
    capsys.readouterr()
    assert train_cli.main(["501", "tlt", "0", "--mode", "ssl", "--epochs", "1"]) == 1
    assert "--mode is not an option of 'tlt'" in capsys.readouterr().err

    images = Path(os.environ["lesionnet_raw"]) / DATASET_501 / "imagesTs"
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "pred"), "-m", "dlt_mix", "--save_heatmaps",
                             "--no_progress"]) == 0
    predictions = read_predictions(tmp_path / "pred" / "predictions.json")
    raw_pairs = json.loads((Path(os.environ["lesionnet_raw"]) / DATASET_501 / "pairsTs.json").read_text())
    assert predictions["method"] == "dlt_mix" and len(predictions["results"]) == len(raw_pairs)
    for record in predictions["results"]:
        assert np.isfinite(record["predict target center"]).all()
        assert (tmp_path / "pred" / "heatmaps" / f"{record['pair_id']}.nii.gz").is_file()
    # the robustness protocol: every pair also from 9 shifted template centers, scored against the originals
    from lesionnet.cli.evaluate_tracking import main as evaluate_main
    robust = tmp_path / "robust"
    assert predict_cli.main(["-i", str(images), "-o", str(robust), "-m", "dlt_mix", "--robustness",
                             "--no_progress"]) == 0
    assert evaluate_main([str(robust / "predictions.json"), "--robustness", "-o", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())["robustness"]
    assert result["n_pairs"] == len(raw_pairs) and result["shifts_per_pair"] == 9
    assert result["spread_mm"]["median"] >= 0


def test_dlt_mix_trains_on_two_processes_with_identical_replicas(env_501, tmp_path):
    """DLT-Mix under data-parallel training (gloo): supervised and self-supervised batches, both ranks hold
    identical weights after every step, and the sharded validation covers every validation pair."""
    result = train_model(501, REGISTRY["dlt_mix"], 0, preset="tiny", progress=False, output_folder=tmp_path / "ddp",
                         num_processes=2, check_replicas=True, threads_per_process=1,
                         **{**TINY, "num_epochs": 2, "batch_size": 2})
    final = load_checkpoint(result.output_folder / FINAL)
    assert [h["epoch"] for h in final["history"]] == [0, 1]
    assert final["history"][-1]["val_n"] == TINY["max_val_pairs"]
