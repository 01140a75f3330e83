"""Greedy clustering of overlapping boxes by IoU or IoS, and SAHI's greedy non-maximum merging (GREEDYNMM).

NMS and GREEDYNMM share one greedy pass: boxes are visited best score first, and a box not yet claimed
leads a cluster that claims every later unclaimed box of its class overlapping it by at least the
threshold. NMS keeps the leaders. GREEDYNMM (SAHI's default for sliced prediction) grows each leader into
the union box of its members, visited best first, each joining while it still overlaps the grown box by
more than the threshold (a member that no longer does is dropped, as SAHI drops it). The match metric is
IoU or IoS, intersection over the smaller box: a car cut in half by a window border overlaps the whole
car by IoS 1 but IoU 0.5, so IoS merges such halves where IoU may not.

Done without an n x n matrix or a Python loop over boxes: the overlapping pairs come from a sweep over x,
and the greedy order is solved by iterating "a box leads unless an earlier leader claims it" to its
fixed point, which takes as many rounds as the longest chain of overlaps (a handful), not n.
"""
from __future__ import annotations

import torch

MATCH_METRICS = ("iou", "ios")
_BLOCK = 1 << 21  # candidate pairs per block: 2 M, ~16 MB an int64 tensor


def overlap_pairs(boxes: torch.Tensor, groups: torch.Tensor, thr: float, metric: str = "ios"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (i, j), i < j, of boxes in the same group with metric(i, j) >= thr, and that metric.
    boxes (n, 4) xyxy; groups (n,) class ids (all equal for class-agnostic matching). Only pairs whose
    x-extents intersect are measured (boxes sorted by x1: each against the run of boxes starting
    before it ends), so a large image's thousands of small boxes cost their neighbours, not n^2."""
    if metric not in MATCH_METRICS:
        raise ValueError(f"match metric must be one of {MATCH_METRICS}, got {metric!r}")
    n, dev = len(boxes), boxes.device
    if n == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, boxes.new_zeros(0)
    # shift each group along x past the others (batched_nms' trick): boxes of two groups never meet
    # (in float64, and for the sweep only: the metric is measured on the boxes as given)
    shift = groups.double() * (boxes[:, :4].abs().max().double() * 2 + 1)
    sx1, sx2 = boxes[:, 0].double() + shift, boxes[:, 2].double() + shift
    x1, y1, x2, y2 = boxes[:, :4].unbind(1)
    area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
    xs = torch.sort(sx1, stable=True).indices
    pos = torch.arange(n, device=dev)
    end = torch.searchsorted(sx1[xs].contiguous(), sx2[xs].contiguous(), side="left")  # first box from x2 on
    cnt = (end - pos - 1).clamp_min(0)  # candidates after each box in x1 order
    cum = torch.cumsum(cnt, 0)
    out_i, out_j, out_m = [], [], []
    lo = 0
    while lo < n:  # rows in blocks of about _BLOCK candidate pairs
        base = int(cum[lo - 1]) if lo else 0
        hi = max(int(torch.searchsorted(cum, base + _BLOCK, side="right")), lo + 1)
        c = cnt[lo:hi]
        a = torch.repeat_interleave(pos[lo:hi], c)
        b = a + 1 + torch.arange(len(a), device=dev) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        i, j = xs[a], xs[b]
        ih = torch.minimum(y2[i], y2[j]) - torch.maximum(y1[i], y1[j])
        keep = ih > 0  # x-extents meet by construction; most candidates miss in y
        i, j, ih = i[keep], j[keep], ih[keep]
        inter = (torch.minimum(x2[i], x2[j]) - torch.maximum(x1[i], x1[j])).clamp_min(0) * ih
        den = area[i] + area[j] - inter if metric == "iou" else torch.minimum(area[i], area[j])
        m = inter / den.clamp_min(1e-12)
        ok = (m >= thr) & (inter > 0)
        i, j, m = i[ok], j[ok], m[ok]
        out_i.append(torch.minimum(i, j)), out_j.append(torch.maximum(i, j)), out_m.append(m)
        lo = hi
    if not out_i:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, boxes.new_zeros(0)
    i, j, m = torch.cat(out_i), torch.cat(out_j), torch.cat(out_m)
    order = torch.argsort(i * n + j)  # (i, j) in row-major order, as a dense scan would list them
    return i[order], j[order], m[order]


def greedy_clusters(det: torch.Tensor, thr: float, metric: str = "ios", agnostic: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy pass on (n, 6) [x1, y1, x2, y2, conf, cls] boxes: (order, leader) where order sorts
    the boxes best score first and leader[k] is the position in that order of the cluster leader of
    sorted box k (leader[k] == k for leaders)."""
    n = len(det)
    order = torch.sort(det[:, 4], descending=True, stable=True).indices
    d = det[order]
    groups = torch.zeros_like(d[:, 5]) if agnostic else d[:, 5]
    i, j, _ = overlap_pairs(d[:, :4], groups, thr, metric)  # i < j: i scores at least as high
    lead = torch.ones(n, dtype=torch.bool, device=det.device)
    for _ in range(n + 1):  # converges after (longest chain of claims + 1) rounds
        claimed = torch.zeros(n, dtype=torch.bool, device=det.device)
        claimed[j[lead[i]]] = True
        new = ~claimed
        if torch.equal(new, lead):
            break
        lead = new
    leader = torch.arange(n, device=det.device)
    sel = lead[i] & ~lead[j]  # a follower joins the best leader that claims it
    leader.scatter_reduce_(0, j[sel], i[sel], reduce="amin", include_self=True)
    return order, leader


def _metric(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Row-wise IoU / IoS of (k, 4) boxes a and b."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp_min(0).prod(1)
    aa, ab = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    den = aa + ab - inter if metric == "iou" else torch.minimum(aa, ab)
    return inter / den.clamp_min(1e-12)


def greedy_merge(det: torch.Tensor, thr: float = 0.5, metric: str = "ios", mode: str = "greedy-nmm",
                 agnostic: bool = False) -> torch.Tensor:
    """Leaders of the greedy pass ('nms') or their merged boxes ('greedy-nmm'), best score first.
    A merged box is the union of its leader and the members still matching the growing union by more
    than thr; it keeps the leader's score and class (the best of its cluster, as SAHI keeps them)."""
    if mode not in ("nms", "greedy-nmm"):
        raise ValueError(f"greedy_merge: mode must be 'nms' or 'greedy-nmm', got {mode!r}")
    if len(det) == 0:
        return det.reshape(0, 6)
    order, leader = greedy_clusters(det, thr, metric, agnostic)
    d = det[order]
    is_lead = leader == torch.arange(len(d), device=d.device)
    out = d.clone()
    if mode == "greedy-nmm":
        members = (~is_lead).nonzero(as_tuple=True)[0]  # ascending: best score first within each cluster
        if len(members):
            # rank of each member inside its cluster, then one vectorised step per rank
            lead_of = leader[members]
            srt = torch.sort(lead_of, stable=True).indices
            members, lead_of = members[srt], lead_of[srt]
            first = torch.ones_like(lead_of, dtype=torch.bool)
            first[1:] = lead_of[1:] != lead_of[:-1]
            start = torch.cummax(torch.where(first, torch.arange(len(lead_of), device=d.device), 0), 0).values
            rank = torch.arange(len(lead_of), device=d.device) - start
            for r in range(int(rank.max()) + 1):
                at = rank == r
                ls, ms = lead_of[at], members[at]
                grown = out[ls, :4]
                ok = _metric(grown, d[ms, :4], metric) > thr
                ls, ms = ls[ok], ms[ok]
                out[ls, :2] = torch.minimum(out[ls, :2], d[ms, :2])
                out[ls, 2:4] = torch.maximum(out[ls, 2:4], d[ms, 2:4])
    return out[is_lead]
