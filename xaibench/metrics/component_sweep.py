"""The box of the largest 8-connected component of a uint8 map at every cut of a threshold sweep, for
MaxBoxAcc: dense labelling where a cut keeps much of the map, one union-find over its level sets elsewhere.
"""

from __future__ import annotations

import numpy as np

#: labelling one plane densely costs about as much as merging this share of a map's pixels in the
#: union-find (bench/bench_box_sweep.py times the choices)
DENSE_SHARE = 0.05
#: pixels whose level sets are merged in one union-find (bounds its memory, about 60 bytes a pixel)
UNION_FIND_PIXELS = 1 << 21


def largest_component_boxes_wsol(binary: np.ndarray) -> np.ndarray:
    """(N,4) int64 box of the largest 8-connected component of each (N,H,W) binary plane, in
    wsolevaluation's convention (x0, y0, min(x_max+1, W−1), min(y_max+1, H−1)); (0,0,0,0) for an empty
    plane (Choe et al., CVPR 2020, `compute_bboxes_from_scoremaps`). One `scipy.ndimage.label` call for all
    planes; on equal sizes the component whose first pixel comes first in raster order wins."""
    from scipy import ndimage

    n, h, w = binary.shape
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity within a plane only
    labels, count = ndimage.label(binary, structure=structure)
    flat = labels.reshape(n, -1)
    # labels are numbered in raster order, so plane p holds the contiguous range starts[p]…ends[p]
    ends = np.maximum.accumulate(flat.max(1))
    starts = np.concatenate([[0], ends[:-1]]) + 1
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    key = sizes * (count + 1) + (count - np.arange(1, count + 1))  # largest first, then the lowest label
    has = ends >= starts
    largest = np.zeros(n, dtype=np.int64)
    if has.any():
        best = np.maximum.reduceat(key, starts[has] - 1) if count else np.zeros(0, dtype=np.int64)
        largest[has] = count - best % (count + 1)
    inside = (flat == largest[:, None]).reshape(n, h, w) & (largest[:, None, None] > 0)
    rows, cols = inside.any(2), inside.any(1)
    y0, x0 = rows.argmax(1), cols.argmax(1)
    y1 = h - 1 - rows[:, ::-1].argmax(1)
    x1 = w - 1 - cols[:, ::-1].argmax(1)
    boxes = np.stack([x0, y0, np.minimum(x1 + 1, w - 1), np.minimum(y1 + 1, h - 1)], 1).astype(np.int64)
    boxes[~rows.any(1)] = 0
    return boxes


def largest_component_boxes_by_cut(quant: np.ndarray, cuts: np.ndarray, dense_share: float = DENSE_SHARE,
                                   dense_planes: int = 400) -> np.ndarray:
    """(N,T,4) int64: for each (N,H,W) uint8 map and each of its cuts (N,T) in 0..254, the box of the
    largest 8-connected component of `quant > cut` as `largest_component_boxes_wsol` gives it (Choe et al.,
    CVPR 2020). Equal to labelling every plane; cheaper: the lowest cuts of a map, where each level adds
    many pixels, are labelled densely (`dense_cuts`, `dense_planes` planes a call), the others of all maps
    come from one union-find over their level sets (the component tree of Salembier, Oliveras & Garrido, IEEE TIP 1998;
    Najman & Couprie, IEEE TIP 2006), whose work grows with the pixels above the cuts, not with T."""
    n, h, w = quant.shape
    cuts = np.asarray(cuts, dtype=np.int64)
    if cuts.ndim != 2 or len(cuts) != n or (cuts < 0).any() or (cuts > 254).any():
        raise ValueError(f"cuts must be (N={n}, T) whole numbers in 0..254, got shape {cuts.shape}")
    boxes = np.zeros(cuts.shape + (4,), dtype=np.int64)
    dense = dense_cuts(quant, cuts, dense_share)
    rows, cols = np.nonzero(dense)
    for s in range(0, len(rows), dense_planes):
        i, t = rows[s:s + dense_planes], cols[s:s + dense_planes]
        boxes[i, t] = largest_component_boxes_wsol(quant[i] > cuts[i, t][:, None, None].astype(np.uint8))
    per_call = max(1, UNION_FIND_PIXELS // max(1, h * w))
    for s in range(0, n, per_call):
        sl = slice(s, min(n, s + per_call))
        sparse = ~dense[sl]
        if sparse.any():
            found = union_find_boxes(quant[sl], np.where(sparse, cuts[sl], -1))
            boxes[sl][sparse] = found[sparse]
    return boxes


def dense_cuts(quant: np.ndarray, cuts: np.ndarray, dense_share: float) -> np.ndarray:
    """(N,T) bool: the cuts to label densely. Per map, the union-find merges every pixel above its lowest
    cut left to it, and a plane labelled densely costs about `dense_share` of the map's pixels merged; so
    the map's lowest s distinct cuts go dense for the s that maximizes (pixels the union-find then skips)
    − s·dense_share·H·W: noisy maps, whose low levels hold most pixels, label a few planes; smooth maps,
    whose levels add pixels evenly, none. dense_share 0 labels every plane, inf none."""
    n, h, w = quant.shape
    dense = np.zeros(cuts.shape, dtype=bool)
    if not np.isfinite(dense_share):
        return dense
    for i in range(n):
        at_least = np.bincount(quant[i].ravel(), minlength=256)[::-1].cumsum()[::-1]  # pixels ≥ level
        levels = np.unique(cuts[i][cuts[i] >= 0]) + 1
        if not len(levels):
            continue
        skipped = at_least[levels[0]] - np.append(at_least[levels], 0)  # with the lowest s cuts dense, s = 0…K
        s = int(np.argmax(skipped - np.arange(len(levels) + 1) * dense_share * h * w))
        if s:
            dense[i] = (cuts[i] >= 0) & (cuts[i] + 1 < (levels[s] if s < len(levels) else 256))
    return dense


def union_find_boxes(quant: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """`largest_component_boxes_by_cut` for every cut ≥ 0 of `cuts` (a cut of −1 is skipped and gives
    zeros) by one union-find: the maps' level sets are merged from the top cut of each map down, one
    level of every map per step, and after each step the largest component so far (its size only grows)
    gives that level's box. Union by size keeps the trees shallow; a step merges with `graph_labels`."""
    n, h, w = quant.shape
    hw, npx = h * w, quant.size
    # each map's needed levels (cut + 1) ranked from 1, shifted so that every map's top level is `steps`:
    # step g merges the pixels and edges whose rank is steps − g, the same distance from each map's top
    levels = cuts + 1
    rank = np.zeros((n, 256), dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        needed = np.unique(levels[i][levels[i] > 0])
        counts[i] = len(needed)
        rank[i] = np.searchsorted(needed, np.arange(256), side="right")
    steps = int(counts.max()) if n else 0
    if steps == 0:
        return np.zeros(cuts.shape + (4,), dtype=np.int64)
    table = np.zeros((n, steps + 1, 4), dtype=np.int64)  # box per map and step; the last column stays 0
    rank = np.where(rank > 0, rank + (steps - counts)[:, None], 0).astype(np.uint8)
    value = rank[np.arange(n)[:, None, None], quant]  # 0: below every needed level, never merged
    a, b, edge_value = level_edges(value)
    edge_step = steps - edge_value
    order = np.argsort(edge_step, kind="stable")  # radix sort of uint8
    a, b = a[order], b[order]
    edge_end = np.concatenate([[0], np.cumsum(np.bincount(edge_step, minlength=steps))])
    flat = value.reshape(-1)
    pixels = np.flatnonzero(flat).astype(np.int32)
    pixel_step = steps - flat[pixels]
    pixels = pixels[np.argsort(pixel_step, kind="stable")]
    pixel_end = np.concatenate([[0], np.cumsum(np.bincount(pixel_step, minlength=steps))])

    parent = np.arange(npx, dtype=np.int32)
    size = np.ones(npx, dtype=np.int64)
    first = np.tile(np.arange(hw, dtype=np.int64), n)  # raster index of the component's first pixel
    y0 = np.broadcast_to(np.arange(h, dtype=np.int32)[:, None], (n, h, w)).ravel()
    x0 = np.broadcast_to(np.arange(w, dtype=np.int32), (n, h, w)).ravel()
    y1, x1 = y0.copy(), x0.copy()
    best = np.full(n, -1, dtype=np.int64)  # per map: size·hw + (hw − 1 − first) of its largest component
    seen = np.zeros(npx, dtype=bool)
    slot = np.zeros(npx, dtype=np.int32)

    def find(x: np.ndarray) -> np.ndarray:
        r = parent[x]
        while True:
            up = parent[r]
            if np.array_equal(up, r):
                break
            r = up
        parent[x] = r
        return r

    for g in range(steps):
        ea, eb = a[edge_end[g]:edge_end[g + 1]], b[edge_end[g]:edge_end[g + 1]]
        touched = pixels[pixel_end[g]:pixel_end[g + 1]]
        if len(ea):
            roots = find(np.concatenate([ea, eb]))
            ra, rb = roots[:len(ea)], roots[len(ea):]
            apart = ra != rb
            if apart.any():
                ra, rb = ra[apart], rb[apart]
                both = np.concatenate([ra, rb])
                if len(both) * 32 > npx:  # many roots: mark them instead of sorting
                    seen[both] = True
                    u = np.flatnonzero(seen).astype(np.int32)
                    seen[u] = False
                    slot[u] = np.arange(len(u), dtype=np.int32)
                    inverse = slot[both]
                else:
                    u, inverse = np.unique(both, return_inverse=True)
                group = graph_labels(len(u), inverse[:len(ra)], inverse[len(ra):])
                k = len(u)
                # union by size: the largest member root becomes the group's root (ties: the lowest index)
                lead = np.full(k, -1, dtype=np.int64)
                np.maximum.at(lead, group, size[u] * npx + (npx - 1 - u))
                members = lead >= 0
                root = np.zeros(k, dtype=np.int32)
                root[members] = npx - 1 - lead[members] % npx
                merged = {}
                for name, stat, reduce, start in (("size", size, np.add, 0), ("first", first, np.minimum, hw),
                                                  ("y0", y0, np.minimum, h), ("x0", x0, np.minimum, w),
                                                  ("y1", y1, np.maximum, -1), ("x1", x1, np.maximum, -1)):
                    acc = np.full(k, start, dtype=stat.dtype)
                    reduce.at(acc, group, stat[u])
                    merged[name] = acc[members]
                parent[u] = root[group]
                top = root[members]
                size[top], first[top] = merged["size"], merged["first"]
                y0[top], x0[top], y1[top], x1[top] = merged["y0"], merged["x0"], merged["y1"], merged["x1"]
                touched = np.concatenate([touched, top])
        if len(touched):  # a component that grew or appeared may now be its map's largest
            r = find(touched)
            np.maximum.at(best, r // hw, size[r] * hw + (hw - 1 - first[r]))
        maps = np.flatnonzero((counts > g) & (best >= 0))
        if len(maps):
            r = find((maps * hw + (hw - 1 - best[maps] % hw)).astype(np.int32))
            table[maps, g] = np.stack([x0[r], y0[r], np.minimum(x1[r] + 1, w - 1), np.minimum(y1[r] + 1, h - 1)], 1)
    step_of_cut = steps - rank[np.arange(n)[:, None], levels.clip(0)].astype(np.int64)  # cut −1: step `steps`
    return table[np.arange(n)[:, None], step_of_cut]


def level_edges(value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-neighbour edges (a, b, level = min of the two values > 0) of (N,H,W) uint8 maps, as flat
    pixel indices, that the components of every level set need: all vertical edges; a horizontal edge
    unless both pixels above reach its level; a diagonal edge unless one of its two shared neighbours does
    (each dropped edge is bridged at its level by kept edges, so no component changes)."""
    n, h, w = value.shape
    v = value
    index = np.arange(value.size, dtype=np.int32).reshape(n, h, w)
    parts = []
    level = np.minimum(v[:, :-1], v[:, 1:])  # (y,x)–(y+1,x)
    parts.append((index[:, :-1], index[:, 1:], level, level > 0))
    level = np.minimum(v[:, :, :-1], v[:, :, 1:])  # (y,x)–(y,x+1)
    keep = level > 0
    keep[:, 1:] &= np.minimum(v[:, :-1, :-1], v[:, :-1, 1:]) < level[:, 1:]
    parts.append((index[:, :, :-1], index[:, :, 1:], level, keep))
    level = np.minimum(v[:, :-1, :-1], v[:, 1:, 1:])  # (y,x)–(y+1,x+1), shared (y,x+1), (y+1,x)
    keep = (level > 0) & (np.maximum(v[:, :-1, 1:], v[:, 1:, :-1]) < level)
    parts.append((index[:, :-1, :-1], index[:, 1:, 1:], level, keep))
    level = np.minimum(v[:, :-1, 1:], v[:, 1:, :-1])  # (y,x+1)–(y+1,x), shared (y,x), (y+1,x+1)
    keep = (level > 0) & (np.maximum(v[:, :-1, :-1], v[:, 1:, 1:]) < level)
    parts.append((index[:, :-1, 1:], index[:, 1:, :-1], level, keep))
    return tuple(np.concatenate([part[j][part[3]] for part in parts]) for j in range(3))


def graph_labels(k: int, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """(k,) a label per node of the undirected graph on k nodes with edges ia–ib, equal within a
    connected component: scipy's `connected_components` for large graphs; below, hooking each root to the
    smallest root it touches and pointer jumping (Shiloach & Vishkin, J. Algorithms 1982), which avoids
    scipy's fixed cost of building a sparse matrix."""
    if len(ia) > 4096:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(k, k))
        return connected_components(graph, directed=False)[1]
    label = np.arange(k, dtype=np.int64)
    while True:
        la, lb = label[ia], label[ib]
        if np.array_equal(la, lb):
            return label
        low = np.minimum(la, lb)
        np.minimum.at(label, la, low)
        np.minimum.at(label, lb, low)
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
