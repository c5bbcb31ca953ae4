"""LN-Tracker training samples: chains of ``L`` adjacent axial slices ``z - L + 1 .. z`` (``L = 2``: a pair)
with their 2D instance boxes.

One sample of a preprocessed detection case (``image`` and ``seg``, both ``[z, y, x]``):

* ``images`` ``(L, S, H, W)`` float32: the 2.5D inputs of the chain's slices, bottom first, each
  ``S = 2 k + 1`` slices ``z - k .. z + k`` as channels (the volume's first / last slice repeated beyond
  it, :func:`stack_context`), cropped in plane to ``patch_size_yx = (H, W)`` — the same crop for all;
* ``ids`` / ``boxes``: per slice, ``(M,)`` int64 and ``(M, 4)`` float64, the instance labels present and
  their boxes ``[x1, y1, x2, y2]`` in pixels of the crop, half open (a one-pixel box has size 1), in
  increasing label order. The same label on several slices is the same lymph node: that identity is
  what the track queries are trained on.

Crop rule (:func:`choose_crop_start_yx`): a uniformly random in-plane window that keeps inside, when it
fits, every instance of the chain, else every instance of its last slice ``z``, else one random
instance of slice ``z`` (of an earlier slice when ``z`` has none). Where the window leaves the slice (a
slice smaller than the patch), it is padded with the **minimum of the image slices read** (air / outside
the body in normalised CT; 0 would be mid-range soft tissue after z-scoring). Boxes are clipped to the
crop and dropped, with their labels, when they become empty.

:class:`SliceBatchMaker` is the ``make_batch(scan_ids, rng)`` of
:class:`lesionnet.training.batch_stream.SeededBatchLoader` (items = scan ids).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from lesionnet.evaluation.boxes3d import instance_boxes
from lesionnet.preprocessing.loading import crop_zyx
from lesionnet.training.batch_stream import BatchDraws

#: columns of a 3D box [x1, y1, z1, x2, y2, z2] that form the 2D box [x1, y1, x2, y2]
_XYXY_OF_XYZXYZ = [0, 1, 3, 4]


def slice_boxes(seg_zyx, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Instances of axial slice ``z`` of an instance mask ``seg_zyx`` ``[z, y, x]`` (0 background).

    Returns ``(instance_ids (M,) int64, boxes_xyxy (M, 4) float64)``: boxes ``[x1, y1, x2, y2]`` in pixels,
    half open (``min .. max + 1`` of the instance's pixels), sorted by instance id.
    """
    one_slice = np.asarray(seg_zyx[int(z): int(z) + 1])
    ids, boxes_xyz = instance_boxes(one_slice)
    return ids, boxes_xyz[:, _XYXY_OF_XYZXYZ].reshape(-1, 4)


def context_indices(z: int, slices_per_side: int, num_slices: int) -> np.ndarray:
    """``(2k + 1,)`` slice indices ``z - k .. z + k`` clipped to ``[0, num_slices - 1]`` (edge padding)."""
    k = int(slices_per_side)
    return np.clip(np.arange(int(z) - k, int(z) + k + 1), 0, int(num_slices) - 1)


def stack_context(image_zyx, z: int, slices_per_side: int) -> np.ndarray:
    """The 2.5D input of slice ``z``: ``(2k + 1, Y, X)`` float32, slices ``z - k .. z + k`` as channels,
    the first / last slice repeated beyond the volume. Reads only those slices (numpy or blosc2)."""
    indices = context_indices(z, slices_per_side, image_zyx.shape[0])
    low, high = int(indices.min()), int(indices.max()) + 1
    block = np.asarray(image_zyx[low:high])
    return block[indices - low].astype(np.float32)


def _axis_window(size: int, patch: int, low: float, high: float) -> tuple[int, int] | None:
    """Range ``[a, b]`` of crop starts along one axis keeping ``[low, high)`` inside a window of ``patch``
    pixels, None when it cannot. Starts are negative (padding) only where the slice is smaller than the patch."""
    first, last = min(0, size - patch), max(0, size - patch)
    a, b = max(first, int(np.ceil(high)) - patch), min(last, int(np.floor(low)))
    return (a, b) if a <= b else None


def _inner_window(size: int, patch: int, low: float, high: float) -> tuple[int, int]:
    """Range of crop starts along one axis for a window lying inside ``[low, high)`` (longer than ``patch``)."""
    first, last = min(0, size - patch), max(0, size - patch)
    a, b = max(first, int(np.floor(low))), min(last, int(np.ceil(high)) - patch)
    return (a, b) if a <= b else (first, last)


def choose_crop_start_yx(slice_shape_yx, patch_size_yx, boxes_prev_xyxy, boxes_xyxy,
                         rng: np.random.Generator) -> tuple[int, int]:
    """Start ``(y0, x0)`` (pixels; negative where the slice is smaller than the patch) of a uniformly random
    crop of ``patch_size_yx`` that keeps inside, when it fits: the instances of both slices, else those of
    slice ``z`` (``boxes_xyxy``), else one random instance — along an axis where that one is longer than
    the patch, a window inside it. Without instances, uniform over the slice."""
    sizes = [int(v) for v in slice_shape_yx]
    patches = [int(v) for v in patch_size_yx]
    boxes_prev = np.asarray(boxes_prev_xyxy, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    single = boxes if len(boxes) else boxes_prev
    groups = [np.concatenate([boxes_prev, boxes]), boxes]
    if len(single):
        groups.append(single[int(rng.integers(len(single)))][None])
    windows = [(min(0, n - p), max(0, n - p)) for n, p in zip(sizes, patches)]
    for group in groups:
        if not len(group):
            continue
        extents = [(group[:, 1].min(), group[:, 3].max()), (group[:, 0].min(), group[:, 2].max())]   # y, x
        fitted = [_axis_window(n, p, low, high) for n, p, (low, high) in zip(sizes, patches, extents)]
        if all(w is not None for w in fitted):
            windows = fitted
            break
        if group is groups[-1] and len(group) == 1:
            windows = [w if w is not None else _inner_window(n, p, low, high)
                       for w, n, p, (low, high) in zip(fitted, sizes, patches, extents)]
    y0, x0 = (int(rng.integers(a, b + 1)) for a, b in windows)
    return y0, x0


def crop_boxes(ids, boxes_xyxy, start_yx, patch_size_yx) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[x1, y1, x2, y2]`` of the slice moved to a crop starting at ``start_yx = (y0, x0)`` of
    ``patch_size_yx = (H, W)``, clipped to ``[0, W] x [0, H]``; boxes left empty are dropped with their ids.
    Returns ``(ids (M',) int64, boxes (M', 4) float64)``."""
    y0, x0 = start_yx
    height, width = patch_size_yx
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) - np.array([x0, y0, x0, y0], dtype=np.float64)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return np.asarray(ids, dtype=np.int64).reshape(-1)[keep], boxes[keep]


def flip_boxes_left_right(boxes_xyxy, width: int) -> np.ndarray:
    """Boxes ``[x1, y1, x2, y2]`` (half open) of an image of ``width`` pixels flipped along x."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return boxes


class SliceChainSampler:
    """Training samples of chains of adjacent slices (see the module docstring).

    Args:
        load_case: ``scan_id -> case`` with ``.image`` and ``.seg`` ``[z, y, x]`` (numpy or blosc2), e.g.
            :meth:`lesionnet.preprocessing.loading.PreprocessedDataset.cached_case`.
        patch_size_yx: in-plane crop ``(H, W)``, pixels.
        slices_per_side: ``k``, the 2.5D context (``2k + 1`` input channels).
        chain_length: ``L``, adjacent slices ``z - L + 1 .. z`` per sample (2: a pair).
        positive_fraction: probability that the last slice ``z`` is drawn among the slices holding an
            instance (when the scan has any at ``z >= L - 1``); otherwise uniform over ``L - 1 .. Z - 1``.
        augment: a random left-right flip (p = 0.5) of the slices and their boxes, and an intensity scale
            (uniform 0.9 .. 1.1) and shift (uniform -0.1 .. 0.1, normalised units) shared by the chain.
    """

    def __init__(self, load_case: Callable, patch_size_yx, slices_per_side: int, chain_length: int = 2,
                 positive_fraction: float = 0.67, augment: bool = False):
        if int(chain_length) < 2:
            raise ValueError(f"chain_length must be at least 2 (a pair of slices), got {chain_length}")
        self.load_case = load_case
        self.patch_size_yx = tuple(int(v) for v in patch_size_yx)
        self.slices_per_side = int(slices_per_side)
        self.chain_length = int(chain_length)
        self.positive_fraction = float(positive_fraction)
        self.augment = bool(augment)
        self._positive_slices: dict = {}

    def positive_slices(self, scan_id: str, seg_zyx) -> np.ndarray:
        """Indices ``z >= L - 1`` of the slices of ``seg_zyx`` holding an instance (cached per scan)."""
        if scan_id not in self._positive_slices:
            seg = np.asarray(seg_zyx)
            present = np.flatnonzero(seg.reshape(seg.shape[0], -1).any(axis=1))
            self._positive_slices[scan_id] = present[present >= self.chain_length - 1]
        return self._positive_slices[scan_id]

    def choose_slice(self, scan_id: str, seg_zyx, rng: np.random.Generator) -> int:
        """The last slice ``z`` (``L - 1 .. Z - 1``) of the chain ``z - L + 1 .. z``."""
        num_slices = int(seg_zyx.shape[0])
        if num_slices < self.chain_length:
            raise ValueError(f"scan '{scan_id}' has {num_slices} slice(s): LN-Tracker trains on chains of "
                             f"{self.chain_length} adjacent slices and needs at least {self.chain_length}")
        if rng.random() < self.positive_fraction:
            positives = self.positive_slices(scan_id, seg_zyx)
            if len(positives):
                return int(positives[rng.integers(len(positives))])
        return int(rng.integers(self.chain_length - 1, num_slices))

    def sample(self, scan_id: str, rng: np.random.Generator) -> dict:
        """One chain of scan ``scan_id``: ``images (L, S, H, W)`` float32, ``ids`` / ``boxes`` (lists of ``L``
        arrays, bottom slice first; crop pixels, half open), ``scan_id``, ``z`` (the last slice) and
        ``crop_start_yx`` (the crop's start in slice pixels)."""
        case = self.load_case(scan_id)
        image, seg = case.image, case.seg
        if seg is None:
            raise ValueError(f"scan '{scan_id}' has no instance mask: LN-Tracker trains on detection datasets")
        z = self.choose_slice(scan_id, seg, rng)
        slices = list(range(z - self.chain_length + 1, z + 1))
        found = [slice_boxes(seg, zz) for zz in slices]
        earlier = np.concatenate([boxes for _, boxes in found[:-1]]).reshape(-1, 4)
        start_yx = choose_crop_start_yx(image.shape[1:], self.patch_size_yx, earlier, found[-1][1], rng)
        stacks = [stack_context(image, zz, self.slices_per_side) for zz in slices]
        pad_value = float(min(stack.min() for stack in stacks))
        size = (stacks[0].shape[0], *self.patch_size_yx)
        images = np.stack([crop_zyx(stack, (0, *start_yx), size, pad_value) for stack in stacks])
        cropped = [crop_boxes(ids, boxes, start_yx, self.patch_size_yx) for ids, boxes in found]
        ids_list, boxes_list = [c[0] for c in cropped], [c[1] for c in cropped]
        if self.augment:
            if rng.random() < 0.5:
                images = images[..., ::-1]
                boxes_list = [flip_boxes_left_right(boxes, self.patch_size_yx[1]) for boxes in boxes_list]
            images = images * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
        return {"images": np.ascontiguousarray(images, dtype=np.float32), "ids": ids_list, "boxes": boxes_list,
                "scan_id": scan_id, "z": z, "crop_start_yx": start_yx}


def pad_instances(ids_list, boxes_list) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``ids (M_b,)`` and ``boxes (M_b, 4)`` padded to the batch's largest count:
    ``(ids (B, Mmax) int64, -1 padding; boxes (B, Mmax, 4) float32, zero padding)``."""
    most = max([len(ids) for ids in ids_list], default=0)
    ids_out = np.full((len(ids_list), most), -1, dtype=np.int64)
    boxes_out = np.zeros((len(ids_list), most, 4), dtype=np.float32)
    for b, (ids, boxes) in enumerate(zip(ids_list, boxes_list)):
        ids_out[b, :len(ids)] = ids
        boxes_out[b, :len(ids)] = boxes
    return ids_out, boxes_out


class SliceBatchMaker:
    """``make_batch(scan_ids, draws)`` for :class:`~lesionnet.training.batch_stream.SeededBatchLoader`: one
    chain per scan id, stacked: ``images (B, L, S, H, W)`` float32, ``ids (B, L, Mmax)`` int64 (-1 =
    padding), ``boxes (B, L, Mmax, 4)`` float32 (crop pixels, half open; zeros where padded), ``z (B,)``
    int64 (the chains' last slices), ``scan_ids`` (list)."""

    def __init__(self, sampler: SliceChainSampler):
        self.sampler = sampler

    def __call__(self, scan_ids: list, draws: BatchDraws) -> dict:
        samples = [self.sampler.sample(scan_id, rng) for scan_id, rng in draws.samples(scan_ids)]
        length = len(samples[0]["ids"])
        ids, boxes = pad_instances([i for s in samples for i in s["ids"]], [b for s in samples for b in s["boxes"]])
        return {"images": np.stack([s["images"] for s in samples]),
                "ids": ids.reshape(len(samples), length, -1),
                "boxes": boxes.reshape(len(samples), length, -1, 4),
                "z": np.array([s["z"] for s in samples], dtype=np.int64),
                "scan_ids": [s["scan_id"] for s in samples]}


__all__ = ["slice_boxes", "context_indices", "stack_context", "choose_crop_start_yx", "crop_boxes",
           "flip_boxes_left_right", "SliceChainSampler", "pad_instances", "SliceBatchMaker"]
