"""LN-Tracker training samples: 2D slice boxes, 2.5D context, the crop rule and batch padding."""
from types import SimpleNamespace

import numpy as np
import pytest

from lesionnet.methods.lntracker.slices import (
    SliceBatchMaker,
    SliceChainSampler,
    choose_crop_start_yx,
    crop_boxes,
    slice_boxes,
    stack_context,
)
from lesionnet.training.batch_stream import whole_batch_draws


def _seg_two_nodes():
    """[z, y, x] = (4, 6, 9): node 2 on slices 1-2, node 1 on slice 2 only (non-square slices)."""
    seg = np.zeros((4, 6, 9), dtype=np.int16)
    seg[1:3, 1:3, 4:7] = 2          # y 1..2, x 4..6
    seg[2, 3, 0] = 1                # one pixel at y 3, x 0
    return seg


def _foreground_box_xyxy(image_yx):
    """Half-open [x1, y1, x2, y2] of the non-zero pixels of a 2D [y, x] image."""
    ys, xs = np.nonzero(image_yx)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _sampler_on(seg, patch_yx, slices_per_side=1, **kwargs):
    """A sampler over one scan whose image is its own mask (so image crops show where boxes must be)."""
    case = SimpleNamespace(image=seg.astype(np.float32), seg=seg)
    return SliceChainSampler(lambda scan_id: case, patch_yx, slices_per_side, **kwargs)


def test_slice_boxes_are_half_open_x_then_y_sorted_by_id():
    seg = _seg_two_nodes()
    ids, boxes = slice_boxes(seg, 2)
    assert ids.dtype == np.int64 and boxes.dtype == np.float64
    assert ids.tolist() == [1, 2]
    assert boxes.tolist() == [[0, 3, 1, 4], [4, 1, 7, 3]]       # a one-pixel box has size 1
    ids, boxes = slice_boxes(seg, 0)
    assert ids.shape == (0,) and boxes.shape == (0, 4)


def test_stack_context_repeats_border_slices():
    image = np.broadcast_to(np.arange(4, dtype=np.float64)[:, None, None], (4, 3, 5))
    bottom = stack_context(image, 0, 2)
    assert bottom.shape == (5, 3, 5) and bottom.dtype == np.float32
    assert bottom[:, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert stack_context(image, 3, 2)[:, 0, 0].tolist() == [1, 2, 3, 3, 3]
    assert stack_context(image, 1, 0)[:, 0, 0].tolist() == [1]


def test_crop_keeps_instances_and_boxes_follow_the_crop():
    seg = np.zeros((4, 40, 60), dtype=np.int16)
    seg[1:3, 30:35, 50:56] = 3
    seg[2, 20:22, 40:43] = 5
    sampler = _sampler_on(seg, (16, 24), positive_fraction=1.0)
    starts = set()
    for seed in range(20):
        sample = sampler.sample("scan", np.random.default_rng(seed))
        assert sample["z"] in (1, 2, 3)
        assert sample["images"].shape == (2, 3, 16, 24)             # the pair z - 1, z
        starts.add(sample["crop_start_yx"])
        for step, back in ((1, 0), (0, 1)):
            center = sample["images"][step][1]                         # the slice itself (z or z - 1)
            expected = slice_boxes(seg, sample["z"] - back)[0]
            assert sample["ids"][step].tolist() == expected.tolist()     # every instance kept inside the crop
            for label, box in zip(sample["ids"][step], sample["boxes"][step]):
                assert _foreground_box_xyxy(center == label) == box.tolist()
    assert len(starts) > 1                                      # random crops


def test_slice_smaller_than_patch_is_padded_with_image_minimum():
    seg = np.zeros((3, 5, 7), dtype=np.int16)
    seg[1:3, 2, 3] = 1
    case = SimpleNamespace(image=seg.astype(np.float32) - 2.0, seg=seg)
    sampler = SliceChainSampler(lambda scan_id: case, (8, 10), 0, positive_fraction=1.0)
    sample = sampler.sample("scan", np.random.default_rng(0))
    y0, x0 = sample["crop_start_yx"]
    assert -3 <= y0 <= 0 and -3 <= x0 <= 0
    assert sample["boxes"][-1].tolist() == [[3 - x0, 2 - y0, 4 - x0, 3 - y0]]
    last = sample["images"][-1]
    assert (last == -2.0).sum() == 8 * 10 - 1                   # slice -2 and padding = image minimum -2
    assert last[0, 2 - y0, 3 - x0] == -1.0


def test_crop_rule_falls_back_to_one_instance_and_clips_the_others():
    boxes = np.array([[0, 0, 4, 4], [50, 50, 54, 54]], dtype=np.float64)     # too far apart for a 16 patch
    for seed in range(10):
        y0, x0 = choose_crop_start_yx((64, 64), (16, 16), np.zeros((0, 4)), boxes, np.random.default_rng(seed))
        ids, cropped = crop_boxes([1, 2], boxes, (y0, x0), (16, 16))
        assert len(ids) >= 1 and np.all(cropped[:, 2:] - cropped[:, :2] == 4)
    ids, cropped = crop_boxes([7, 8, 9], [[-3, 2, 5, 6], [20, 20, 30, 30], [9, 9, 12, 12]], (10, 0), (8, 10))
    assert ids.tolist() == [9] and cropped.tolist() == [[9, 0, 10, 2]]      # clipped; empty ones dropped


def test_positive_fraction_one_draws_slices_with_instances():
    seg = np.zeros((30, 8, 8), dtype=np.int16)
    seg[17, 2:4, 2:4] = 1
    sampler = _sampler_on(seg, (8, 8), positive_fraction=1.0)
    assert {sampler.sample("s", np.random.default_rng(seed))["z"] for seed in range(10)} == {17}
    negatives = _sampler_on(seg, (8, 8), positive_fraction=0.0)
    drawn = {negatives.sample("s", np.random.default_rng(seed))["z"] for seed in range(10)}
    assert len(drawn) > 1 and min(drawn) >= 1 and max(drawn) <= 29


def test_flip_augmentation_moves_boxes_with_the_image():
    seg = np.zeros((3, 8, 12), dtype=np.int16)
    seg[1:3, 2:5, 1:4] = 1
    sampler = _sampler_on(seg, (8, 12), slices_per_side=0, positive_fraction=1.0, augment=True)
    flipped = 0
    for seed in range(12):
        sample = sampler.sample("s", np.random.default_rng(seed))
        box = sample["boxes"][-1][0].tolist()
        flipped += box[0] == 12 - 4
        image = sample["images"][-1][0]
        foreground = np.abs(image - np.median(image)) > 1e-6
        assert _foreground_box_xyxy(foreground) == box
    assert 0 < flipped < 12


def test_batch_maker_pads_instances_and_is_seeded():
    full = _seg_two_nodes()
    empty = np.zeros((4, 6, 9), dtype=np.int16)
    cases = {"a": SimpleNamespace(image=full.astype(np.float32), seg=full),
             "b": SimpleNamespace(image=empty.astype(np.float32), seg=empty)}
    maker = SliceBatchMaker(SliceChainSampler(cases.__getitem__, (6, 9), 1, positive_fraction=1.0))
    batch = maker(["a", "b"], whole_batch_draws(2, 3))
    assert batch["images"].shape == (2, 2, 3, 6, 9) and batch["images"].dtype == np.float32
    most = max(1, int((batch["ids"][0] >= 0).sum(axis=1).max()))
    assert batch["ids"].shape == (2, 2, most) and batch["boxes"].shape == (2, 2, most, 4)
    assert (batch["ids"][1] == -1).all() and not batch["boxes"][1].any()
    assert batch["scan_ids"] == ["a", "b"] and batch["z"].dtype == np.int64
    again = maker(["a", "b"], whole_batch_draws(2, 3))
    assert all(np.array_equal(batch[k], again[k]) for k in ("images", "ids", "boxes", "z"))


def test_batch_maker_works_in_seeded_batch_loader():
    from lesionnet.training.batch_stream import SeededBatchLoader
    seg = _seg_two_nodes()
    case = SimpleNamespace(image=seg.astype(np.float32), seg=seg)
    maker = SliceBatchMaker(SliceChainSampler(lambda scan_id: case, (4, 8), 1))
    loader = SeededBatchLoader(["a", "b", "c"], maker, batch_size=2, seed=5)
    first, again = loader.build_batch(4), loader.build_batch(4)
    assert first["images"].shape == (2, 2, 3, 4, 8)
    assert np.array_equal(first["images"], again["images"]) and np.array_equal(first["boxes"], again["boxes"])


def test_single_slice_scan_is_refused():
    seg = np.zeros((1, 4, 4), dtype=np.int16)
    with pytest.raises(ValueError, match="at least 2"):
        _sampler_on(seg, (4, 4)).sample("s", np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 3"):
        _sampler_on(np.zeros((2, 4, 4), dtype=np.int16), (4, 4), chain_length=3).sample("s", np.random.default_rng(0))


def test_chains_of_three_slices_share_one_crop():
    seg = np.zeros((6, 20, 20), dtype=np.int16)
    seg[1:5, 4:8, 5:9] = 1
    seg[3:5, 12:15, 12:16] = 2
    sampler = _sampler_on(seg, (16, 16), slices_per_side=0, chain_length=3, positive_fraction=1.0)
    for seed in range(6):
        sample = sampler.sample("s", np.random.default_rng(seed))
        z = sample["z"]
        assert 2 <= z <= 4 and sample["images"].shape == (3, 1, 16, 16)
        for step, zz in enumerate(range(z - 2, z + 1)):
            assert sample["ids"][step].tolist() == slice_boxes(seg, zz)[0].tolist()
            for label, box in zip(sample["ids"][step], sample["boxes"][step]):
                assert _foreground_box_xyxy(sample["images"][step][0] == label) == box.tolist()
