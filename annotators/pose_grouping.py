"""OpenPose part grouping: body peaks + part affinity fields (PAFs) -> people. Pure numpy, no model.

This is the greedy bottom-up assembly of Cao et al., "Realtime Multi-Person 2D Pose
Estimation using Part Affinity Fields" (CVPR 2017, §2.4), with the constants and the
COCO-18 tables of controlnet_aux's `open_pose/body.py` (itself from CMU openpose via
Hzzone/pytorch-openpose), so a batched run groups exactly as the per-image detector.
Split in two so the PAF lookups can be done in one device gather for a whole batch:
`limb_sample_points` says where to read the PAFs, `group_people` reads the answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_PARTS = 18  # COCO-18 keypoints: nose, neck, r-shoulder/elbow/wrist, l-..., r-hip/knee/ankle, l-..., eyes, ears
MID_POINTS = 10  # PAF samples along each candidate limb (controlnet_aux `mid_num`)

# Limbs as 0-based (part A, part B) and the two PAF channels (x, y) holding each limb's field.
# From controlnet_aux body.py `limbSeq` (1-based) and `mapIdx` (offset by the 19 heatmap channels).
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)  # fmt: skip
PAF_CHANNELS = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
)  # fmt: skip
# Limbs 17 and 18 (ear-shoulder) only join existing people, never start one (controlnet_aux `k < 17`).
SEED_LIMBS = 17


@dataclass(frozen=True)
class Peaks:
    """Part candidates of one image: `xy` int Nx2 (x, y) at the detect resolution, `score` N, `part` N.

    Candidates are ordered by part, then in raster order within a part; a candidate's id is its row.
    """

    xy: np.ndarray
    score: np.ndarray
    part: np.ndarray

    def of_part(self, p: int) -> np.ndarray:
        return np.flatnonzero(self.part == p)


def limb_sample_points(peaks: Peaks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where to read the PAFs: for every limb and every (A, B) candidate pair, MID_POINTS points on the segment.

    Returns (channel_x, ys, xs), int arrays of equal length, in the order `group_people` consumes them:
    limb by limb, A-major then B, MID_POINTS each; the y channel of a sample is `channel_x + 1`.
    """
    chans, ys, xs = [], [], []
    t = np.linspace(0.0, 1.0, MID_POINTS)
    for (pa, pb), (cx, _) in zip(LIMBS, PAF_CHANNELS):
        a, b = peaks.of_part(pa), peaks.of_part(pb)
        if len(a) == 0 or len(b) == 0:
            continue
        start = peaks.xy[a][:, None, None, :].astype(np.float64)  # nA x 1 x 1 x 2
        end = peaks.xy[b][None, :, None, :].astype(np.float64)  # 1 x nB x 1 x 2
        pts = start + (end - start) * t[None, None, :, None]
        # np.rint rounds half to even, like the reference's Python round() on numpy floats.
        pts = np.rint(pts).astype(np.int64).reshape(-1, 2)
        xs.append(pts[:, 0])
        ys.append(pts[:, 1])
        chans.append(np.full(len(pts), cx, np.int64))
    if not chans:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(chans), np.concatenate(ys), np.concatenate(xs)


def group_people(
    peaks: Peaks, paf_x: np.ndarray, paf_y: np.ndarray, image_height: int, paf_threshold: float = 0.05
) -> list[np.ndarray]:
    """Assemble people from part candidates and the PAF values read at `limb_sample_points(peaks)`.

    Returns one int array of 18 candidate ids per person (-1 = part missing), after the
    reference's pruning (fewer than 4 parts, or mean score below 0.4, is dropped).
    """
    connections: list[np.ndarray | None] = []
    offset = 0
    for pa, pb in LIMBS:
        a, b = peaks.of_part(pa), peaks.of_part(pb)
        if len(a) == 0 or len(b) == 0:
            connections.append(None)
            continue
        n = len(a) * len(b) * MID_POINTS
        vx = paf_x[offset : offset + n].reshape(len(a), len(b), MID_POINTS)
        vy = paf_y[offset : offset + n].reshape(len(a), len(b), MID_POINTS)
        offset += n
        connections.append(_connect_limb(peaks, a, b, vx, vy, image_height, paf_threshold))
    return _assemble(peaks, connections)


def _connect_limb(peaks, a, b, vx, vy, image_height, paf_threshold) -> np.ndarray:
    """Rows (id A, id B, score) of the chosen A-B connections, best first, each candidate used once."""
    vec = (peaks.xy[b][None, :, :] - peaks.xy[a][:, None, :]).astype(np.float64)  # nA x nB x 2
    norm = np.maximum(np.sqrt((vec**2).sum(-1)), 1e-3)
    unit = vec / norm[..., None]
    along = vx * unit[..., :1] + vy * unit[..., 1:]  # nA x nB x MID_POINTS: PAF projected on the limb
    # Penalise limbs longer than half the image height (paper eq. 10 with the reference's prior).
    score = along.mean(-1) + np.minimum(0.5 * image_height / norm - 1.0, 0.0)
    enough = (along > paf_threshold).sum(-1) > 0.8 * MID_POINTS
    ok = enough & (score > 0)
    cand = [(score[i, j], i, j) for i in range(len(a)) for j in range(len(b)) if ok[i, j]]
    cand.sort(key=lambda c: c[0], reverse=True)  # stable: ties keep A-major order, as the reference
    rows, used_a, used_b = [], set(), set()
    for s, i, j in cand:
        if i in used_a or j in used_b:
            continue
        rows.append((a[i], b[j], s))
        used_a.add(i)
        used_b.add(j)
        if len(rows) >= min(len(a), len(b)):
            break
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _assemble(peaks: Peaks, connections: list[np.ndarray | None]) -> list[np.ndarray]:
    """Merge limb connections into people; each row: 18 candidate ids, total score, part count."""
    people = np.zeros((0, NUM_PARTS + 2))
    for k, conn in enumerate(connections):
        if conn is None:
            continue
        pa, pb = LIMBS[k]
        for id_a, id_b, s in conn:
            hits = [p for p in range(len(people)) if people[p, pa] == id_a or people[p, pb] == id_b][:2]
            if len(hits) == 1 or (len(hits) == 2 and _overlap(people[hits[0]], people[hits[1]])):
                p = hits[0]
                if people[p, pb] != id_b:
                    people[p, pb] = id_b
                    people[p, -1] += 1
                    people[p, -2] += peaks.score[int(id_b)] + s
            elif len(hits) == 2:  # two disjoint partial people joined by this limb: merge them
                p, q = hits
                people[p, :-2] += people[q, :-2] + 1
                people[p, -2:] += people[q, -2:]
                people[p, -2] += s
                people = np.delete(people, q, axis=0)
            elif not hits and k < SEED_LIMBS:
                row = -np.ones(NUM_PARTS + 2)
                row[pa], row[pb] = id_a, id_b
                row[-1] = 2
                row[-2] = peaks.score[int(id_a)] + peaks.score[int(id_b)] + s
                people = np.vstack([people, row])
    keep = (people[:, -1] >= 4) & (people[:, -2] / np.maximum(people[:, -1], 1) >= 0.4)
    return [row[:NUM_PARTS].astype(np.int64) for row in people[keep]]


def _overlap(p: np.ndarray, q: np.ndarray) -> bool:
    """True when two partial people share a part slot (then they are not merged)."""
    return bool(((p[:NUM_PARTS] >= 0) & (q[:NUM_PARTS] >= 0)).any())
