"""LN-Tracker's boxes, Hungarian matcher, network (attention mask, track queries) and loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionnet.methods.lntracker.boxes import cxcywh_to_xyxy, elementwise_giou, pairwise_giou, xyxy_to_cxcywh
from lesionnet.methods.lntracker.criterion import LNTrackerLoss
from lesionnet.methods.lntracker.matcher import hungarian_match
from lesionnet.methods.lntracker.network import FALSE_POSITIVE, PADDING, LNTrackerConfig, build_lntracker

TINY = LNTrackerConfig(num_input_slices=3, hidden_dim=32, encoder_layers=1, decoder_layers=2, num_heads=4,
                       ffn_dim=64, num_queries=8, backbone_widths=(8, 16, 32), similarity_dim=16)


def test_box_forms_and_giou():
    xyxy = torch.tensor([[2.0, 4.0, 10.0, 8.0]])
    cxcywh = xyxy_to_cxcywh(xyxy, (16, 32))                        # patch 16 high, 32 wide
    assert torch.allclose(cxcywh, torch.tensor([[6 / 32, 6 / 16, 8 / 32, 4 / 16]]))
    assert torch.allclose(cxcywh_to_xyxy(cxcywh, (16, 32)), xyxy)
    a, b = torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[3.0, 0, 5, 2]])
    assert pairwise_giou(a, a).item() == pytest.approx(1.0)
    # disjoint: IoU 0, enclosing 5 x 2 = 10, union 8 -> -0.2
    assert pairwise_giou(a, b).item() == pytest.approx(-0.2)
    assert elementwise_giou(a, b).item() == pytest.approx(-0.2)


def test_hungarian_match_gives_each_box_its_query():
    targets = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.2, 0.1]])
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.7, 0.6, 0.2, 0.1], [0.2, 0.2, 0.1, 0.1]])
    query, box = hungarian_match(torch.zeros(3), boxes, targets)
    assert dict(zip(box.tolist(), query.tolist())) == {0: 2, 1: 1}
    assert hungarian_match(torch.zeros(3), boxes, torch.zeros(0, 4))[0].size == 0
    with pytest.raises(ValueError, match="plan more queries"):
        hungarian_match(torch.zeros(1), boxes[:1], targets)


def _track_queries(batch: int, count: int, width: int = 32) -> torch.Tensor:
    """Random track queries: embeddings and a reference point (cx, cy) inside the patch."""
    return torch.cat((torch.randn(batch, count, width), torch.rand(batch, count, 2)), dim=-1)


def test_detection_queries_do_not_see_track_queries():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    for masked in (True, False):
        net = build_lntracker(LNTrackerConfig(**{**TINY.__dict__, "attention_mask": masked})).eval()
        a = net.detect(images, _track_queries(2, 2))
        b = net.detect(images, _track_queries(2, 2))
        same_detections = torch.allclose(a["logits"][:, 2:], b["logits"][:, 2:], atol=1e-6)
        assert same_detections == masked, "the mask hides track queries from detection queries (and only then)"
        assert not torch.allclose(a["logits"][:, :2], b["logits"][:, :2])          # track queries see themselves
    net = build_lntracker(TINY).eval()
    track = _track_queries(1, 2)
    only = net.detect(images[:1], track[:, :1])
    padded = net.detect(images[:1], track, torch.tensor([[True, False]]))
    assert torch.allclose(only["logits"][:, :1], padded["logits"][:, :1], atol=1e-5)
    assert torch.allclose(only["logits"][:, 1:], padded["logits"][:, 2:], atol=1e-5), "a padded track query is no key"
    with pytest.raises(ValueError, match="multiples of 8"):
        net.detect(torch.randn(1, 3, 30, 32))


def _chain_batch():
    """Two samples of a 3-slice chain: a node continuing over all slices (and one ending after the first);
    a node ending after the first slice and a new one appearing on the second."""
    images = torch.randn(2, 3, 3, 32, 32) * 0.1
    boxes = torch.tensor([[[[4.0, 4, 10, 12], [20, 18, 26, 24]], [[5, 4, 11, 12], [0, 0, 0, 0]],
                           [[5, 5, 11, 13], [0, 0, 0, 0]]],
                          [[[4, 4, 9, 9], [0, 0, 0, 0]], [[18, 18, 26, 26], [0, 0, 0, 0]],
                           [[18, 17, 26, 25], [0, 0, 0, 0]]]])
    ids = torch.tensor([[[1, 2], [1, -1], [1, -1]], [[1, -1], [2, -1], [2, -1]]])
    for b in range(2):
        for step in range(3):
            for (x1, y1, x2, y2), i in zip(boxes[b, step].int().tolist(), ids[b, step].tolist()):
                if i >= 0:
                    images[b, step, :, y1:y2, x1:x2] += 1.0
    return {"images": images, "boxes": boxes, "ids": ids}


def test_track_queries_keep_identities_and_the_loss_trains():
    torch.manual_seed(1)
    batch = _chain_batch()
    net = build_lntracker(TINY)
    out = net(batch["images"], batch["boxes"], batch["ids"])
    assert len(out["passes"]) == 3 and "track_ids" not in out["passes"][0]
    second, third = out["passes"][1]["track_ids"], out["passes"][2]["track_ids"]
    assert set(second[0].tolist()) <= {1, 2, FALSE_POSITIVE} and FALSE_POSITIVE in second[0].tolist()
    assert set(second[1].tolist()) <= {1, FALSE_POSITIVE, PADDING}
    # on the third slice: tracks whose node continued, and the node born on the second slice
    assert set(third[0].tolist()) <= {1, FALSE_POSITIVE, PADDING} and 2 not in third[0].tolist()
    assert set(third[1].tolist()) <= {2, FALSE_POSITIVE, PADDING}
    t = second.shape[1]
    assert out["passes"][1]["similarity"].shape == (2, t, t)
    criterion = LNTrackerLoss()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    first = None
    for _ in range(60):
        out = net(batch["images"], batch["boxes"], batch["ids"])
        losses = criterion(out, batch)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        first = first if first is not None else float(losses["loss"].detach())
        assert all(np.isfinite(float(v.detach())) for v in losses.values())
    assert float(losses["loss"].detach()) < 0.5 * first
    net.eval()
    with torch.no_grad():
        found = net.detect(batch["images"][:, -1])
    best = found["logits"][0].argmax()
    box = cxcywh_to_xyxy(found["boxes"][0, best], (32, 32))
    overlap = pairwise_giou(box[None], batch["boxes"][0, -1, :1])
    assert overlap.item() > 0.3, f"the best detection {box.tolist()} is on the node {batch['boxes'][0, -1, 0].tolist()}"
