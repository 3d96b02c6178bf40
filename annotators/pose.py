"""OpenPose (CMU) body, and body + hands + face, on controlnet_aux's networks with batched forwards.

Joint-1.6M's openpose labels are "OpenPose (CMU)" skeletons (Jodi, arXiv 2505.19084, §3):
the coloured COCO-18 stick figure on black, absent when nobody is in the picture.
controlnet_aux's `OpenposeDetector` runs the body CNN one image at a time and does all
post-processing on the CPU in numpy. Here the CNN runs once per batch of same-size images,
the heatmap/PAF upsampling, smoothing and peak finding stay on the device, and only the
peaks and the few PAF values the grouping reads come back to the host (two small copies per batch).
Grouping (annotators/pose_grouping.py) and drawing (controlnet_aux's own `draw_poses`) are per image.

Constants follow controlnet_aux `open_pose/body.py`, `hand.py` and `face.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotators.base import AnnotationError, Annotator
from annotators.loading import AnnotatorsRepoConfig, controlnet_aux, hub_file
from annotators.pose_grouping import NUM_PARTS, Peaks, group_people, limb_sample_points
from annotators.preprocess import round_to_64
from schemas.checkpoint import load_torch_file

BOXSIZE = 368  # CMU's network box size; every scale below is a fraction of it
STRIDE = 8  # output stride of the OpenPose CNNs


@dataclass(frozen=True)
class OpenposeConfig(AnnotatorsRepoConfig):
    """OpenPose settings. `resolution` is controlnet_aux's detect_resolution: the short side at which
    heatmaps are upsampled and peaks are found; the body CNN itself runs at `net_height`."""

    resolution: int = 512
    multiple_of: int = 1
    max_batch: int = 16
    net_height: int = 184  # controlnet_aux Body: scale_search [0.5] x boxsize 368 / image height
    peak_threshold: float = 0.1  # `thre1`: smoothed heatmap value a part peak must exceed
    paf_threshold: float = 0.05  # `thre2`: PAF alignment a limb sample must exceed
    # OpenposeDetector draws its fixed 4-px sticks/circles on the detect-size canvas (`resize_image`:
    # short side -> detect_resolution, each side rounded to a multiple of 64) and resizes that canvas
    # bilinearly; we draw on that same canvas for this value. Joint's sample (1916x1024) has 32-px
    # joint circles, a 9-px circle drawn with a ~288 short side and upscaled; 0 draws at the input size.
    draw_resolution: int = 288
    include_hands: bool = False
    include_face: bool = False
    hand_scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)  # controlnet_aux Hand scale_search
    hand_threshold: float = 0.05
    face_size: int = 384  # controlnet_aux Face resizes each face crop to 384x384
    face_threshold: float = 0.05
    # Guard against plateaus (blank or synthetic images): keep the strongest peaks of each part.
    # Trained networks give a handful per part; without a cap a flat map makes every pixel a peak.
    max_peaks_per_part: int = 64


class OpenposeAnnotator(Annotator):
    """COCO-18 body skeleton (optionally with hands and face) rendered on black; None when no person."""

    domain = "openpose"
    out_channels = 3

    def __init__(self, config: OpenposeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)

        controlnet_aux("openpose", "controlnet_aux.open_pose")
        from controlnet_aux.open_pose import util
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.model import bodypose_model, handpose_model

        def load(filename: str) -> dict:
            path = hub_file(self.name, config.model_id, filename, config.revision)
            return load_torch_file(path)  # weights only; a pickle is refused in one line

        # The .pth files name layers without the Sequential prefix; controlnet_aux's `transfer` maps them.
        self.body = bodypose_model()
        self.body.load_state_dict(util.transfer(self.body, load("body_pose_model.pth")))
        self.body = self.body.eval().to(device)
        self.hand = self.face = None
        if config.include_hands:
            self.hand = handpose_model()
            self.hand.load_state_dict(util.transfer(self.hand, load("hand_pose_model.pth")))
            self.hand = self.hand.eval().to(device)
        if config.include_face:
            self.face = FaceNet()
            self.face.load_state_dict(load("facenet.pth"))
            self.face = self.face.eval().to(device)

    # ----- the batched network call -----------------------------------------------------------
    def forward(self, x):
        """x: float Bx3xhxw RGB in [0, 1] (h, w multiples of 8) -> (PAFs Bx38, heatmaps Bx19) at h/8 x w/8."""
        with self._autocast():
            pafs, heatmaps = self.body(_openpose_input(x))
        return pafs.float(), heatmaps.float()

    # ----- labelling --------------------------------------------------------------------------
    def annotate(self, images: Sequence[np.ndarray]) -> list[np.ndarray | AnnotationError | None]:
        import torch

        out: list[np.ndarray | None] = [None] * len(images)
        # Autocast covers the network calls only: peak finding and PAF scores stay in fp32.
        with torch.inference_mode():
            for detect, chunk in self.batches(images):
                poses = self._detect_batch([images[i] for i in chunk], detect)
                for i, people in zip(chunk, poses, strict=True):
                    out[i] = self._render(people, images[i].shape[:2]) if people else None
        return out

    def _detect_batch(self, images: list[np.ndarray], detect: tuple[int, int]) -> list[list]:
        """Poses (controlnet_aux PoseResult, coordinates in [0, 1]) of same-detect-size images."""
        import torch.nn.functional as F

        h_d, w_d = detect
        net = (self.config.net_height, max(1, int(w_d * self.config.net_height / h_d)))
        x = self._to_tensor(images, net)
        pad = (0, -net[1] % STRIDE, 0, -net[0] % STRIDE)
        # Pad right/bottom to the stride with grey 128, which is 0 after OpenPose's normalisation.
        pafs, heat = self.forward(F.pad(x, pad, value=128.0 / 255.0))
        pafs, heat = _to_detect(pafs, net, detect), _to_detect(heat[:, :NUM_PARTS], net, detect)
        peaks = _find_peaks(heat, self.config.peak_threshold, self.config.max_peaks_per_part)
        people = _group_batch(peaks, pafs, h_d, self.config.paf_threshold)
        return self._pose_results(images, people, peaks, detect)

    def _pose_results(self, images, people, peaks: list[Peaks], detect: tuple[int, int]) -> list[list]:
        """controlnet_aux PoseResults per image (coordinates in [0, 1]), hands and face included when enabled."""
        from controlnet_aux.open_pose import PoseResult, util
        from controlnet_aux.open_pose.body import Keypoint

        h_d, w_d = detect
        bodies = [  # (image index, body in detect-size pixels)
            (b, _body_result([Keypoint(*map(float, pk.xy[i])) if i >= 0 else None for i in ids]))
            for b, (persons, pk) in enumerate(zip(people, peaks))
            for ids in persons
        ]
        shape = np.empty((h_d, w_d, 3), np.uint8)  # controlnet_aux's box helpers only read the image's shape
        hand_boxes, face_boxes = [], []  # (body index, box)
        for n, (_, body) in enumerate(bodies):
            if self.hand is not None:
                hand_boxes += [(n, box) for box in util.handDetect(body, shape)]
            face = util.faceDetect(body, shape) if self.face is not None else None
            if face is not None:
                face_boxes.append((n, face))
        hands, faces = [], []
        if hand_boxes or face_boxes:
            image = self._to_tensor(images, detect)
            hands = self._hands(image, [(bodies[n][0], *box) for n, box in hand_boxes], detect)
            faces = self._faces(image, [(bodies[n][0], *box) for n, box in face_boxes], detect)
        extras = [{"left": None, "right": None, "face": None} for _ in bodies]
        for (n, box), keypoints in zip(hand_boxes, hands):
            extras[n]["left" if box[3] else "right"] = keypoints
        for (n, _), keypoints in zip(face_boxes, faces):
            extras[n]["face"] = keypoints
        results: list[list] = [[] for _ in images]
        for (b, body), extra in zip(bodies, extras):
            norm = _body_result([Keypoint(k.x / w_d, k.y / h_d) if k is not None else None for k in body.keypoints])
            results[b].append(PoseResult(norm, extra["left"], extra["right"], extra["face"]))
        return results

    # ----- hands and face (openpose_full) -----------------------------------------------------
    def _hands(self, image, boxes: list[tuple], detect: tuple[int, int]) -> list[list]:
        """Keypoints in [0, 1] of each hand box (b, x, y, w, is_left); per scale, the batch's hands in one forward."""
        import torch
        import torch.nn.functional as F
        from controlnet_aux.open_pose.body import Keypoint

        if not boxes:
            return []
        crops = [_gaussian_blur(image[b : b + 1, :, y : y + w, x : x + w], 0.8, radius=3) for b, x, y, w, _ in boxes]
        avg = 0.0
        for scale in self.config.hand_scales:
            size = max(STRIDE, round(scale * BOXSIZE / STRIDE) * STRIDE)  # 184, 368, 552, 736 by default
            batch = torch.cat([F.interpolate(c, size=(size, size), mode="bilinear", antialias=True) for c in crops])
            heat = torch.cat([self._hand_net(part) for part in batch.split(self.config.max_batch)])
            heat = F.interpolate(heat, scale_factor=STRIDE, mode="bicubic", align_corners=False)
            avg = avg + F.interpolate(heat, size=(128, 128), mode="bicubic", align_corners=False)
        avg = (avg / len(self.config.hand_scales))[:, :21]
        smooth = _gaussian_blur(avg, 3.0).cpu().numpy()
        avg = avg.cpu().numpy()
        h_d, w_d = detect
        hands = []
        for (_, x, y, w, _), raw, sm in zip(boxes, avg, smooth):
            keypoints = []
            for part in range(21):
                gx, gy = _hand_peak(raw[part], sm[part], self.config.hand_threshold)
                # Grid -> crop pixels (truncated, as controlnet_aux); a coordinate of 0 means "not found".
                px, py = int(gx * w / 128), int(gy * w / 128)
                keypoints.append(Keypoint((px + x) / w_d if px > 0 else -1.0, (py + y) / h_d if py > 0 else -1.0))
            hands.append(keypoints)
        return hands

    def _hand_net(self, x):
        with self._autocast():
            return self.hand(_openpose_input(x)).float()

    def _faces(self, image, boxes: list[tuple], detect: tuple[int, int]) -> list[list | None]:
        """Keypoints in [0, 1] (parts above threshold) of each face box (b, x, y, w); all faces in one forward."""
        import torch
        import torch.nn.functional as F
        from controlnet_aux.open_pose.body import Keypoint

        if not boxes:
            return []
        size = self.config.face_size
        crops = [image[b : b + 1, :, y : y + w, x : x + w] for b, x, y, w in boxes]
        inp = torch.cat([F.interpolate(c, size=(size, size), mode="bilinear", antialias=True) for c in crops])
        with self._autocast():
            heat = torch.cat([self.face(_openpose_input(p))[-1].float() for p in inp.split(self.config.max_batch)])
        h_d, w_d = detect
        faces = []
        for (_, x, y, _), crop, maps in zip(boxes, crops, heat):
            # Peaks on the map resized to the crop, as controlnet_aux Face (bilinear, align_corners=True).
            maps = F.interpolate(maps[None], size=crop.shape[-2:], mode="bilinear", align_corners=True)[0]
            best, where = (t.cpu().numpy() for t in maps.flatten(1).max(dim=1))
            width = crop.shape[-1]
            keypoints = [
                Keypoint((pos % width + x) / w_d, (pos // width + y) / h_d)
                for val, pos in zip(best, where)
                if val > self.config.face_threshold
            ]
            faces.append(keypoints or None)
        return faces

    # ----- drawing ----------------------------------------------------------------------------
    def _render(self, poses: list, size: tuple[int, int]) -> np.ndarray:
        return render_poses(poses, size, self.config.draw_resolution, self.hand is not None, self.face is not None)


def render_poses(poses: list, size: tuple[int, int], draw_resolution: int, hands: bool = False,
                 face: bool = False) -> np.ndarray:
    """controlnet_aux's draw-then-resize path: `draw_poses` on OpenposeDetector's canvas for
    `draw_resolution` (64-multiple sides), then its bilinear resize, here to the input's HxW (uint8 HxWx3).
    The one OpenPose renderer: OpenPose and ViTPose labels are drawn by it."""
    import cv2
    from controlnet_aux.open_pose import draw_poses

    h, w = size
    res = draw_resolution
    ch, cw = round_to_64(size, res) if res > 0 else size
    canvas = draw_poses(poses, ch, cw, draw_body=True, draw_hand=hands, draw_face=face)
    if res > 0:
        # The detector applies `resize_image` again to its resized input for image_resolution, which
        # can round a side to the next multiple of 64; its output has that size.
        oh, ow = round_to_64((ch, cw), res)
        if (oh, ow) != (ch, cw):
            canvas = cv2.resize(canvas, (ow, oh), interpolation=cv2.INTER_LINEAR)
    if canvas.shape[:2] != (h, w):
        canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas, dtype=np.uint8)


def _body_result(keypoints: list):
    from controlnet_aux.open_pose.body import BodyResult

    return BodyResult(keypoints, total_score=0.0, total_parts=sum(k is not None for k in keypoints))


# ----- device-side helpers --------------------------------------------------------------------
def _openpose_input(x):
    """[0, 1] RGB -> the CMU networks' input: BGR, value / 256 - 0.5 (controlnet_aux body/hand/face)."""
    return x.flip(1) * (255.0 / 256.0) - 0.5


def _to_detect(maps, net: tuple[int, int], detect: tuple[int, int]):
    """Network output at stride 8 -> the detect resolution: x8 upsample, drop the padding, resize.

    controlnet_aux uses Lanczos-4 in OpenCV; bicubic is the closest torch kernel.
    """
    import torch.nn.functional as F

    up = F.interpolate(maps.float(), scale_factor=STRIDE, mode="bicubic", align_corners=False)
    up = up[..., : net[0], : net[1]]
    return F.interpolate(up, size=detect, mode="bicubic", align_corners=False)


def _gaussian_blur(x, sigma: float, radius: int | None = None):
    """Separable Gaussian of a BxCxHxW tensor with mirrored borders (scipy `gaussian_filter`, truncate 4)."""
    import torch
    import torch.nn.functional as F

    r = int(4.0 * sigma + 0.5) if radius is None else radius
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    for dim in (-1, -2):
        n = x.shape[dim]
        rr = min(r, n)
        # scipy's "reflect" mirrors about the edge (d c b a | a b c d); torch's "reflect" does not repeat a.
        x = torch.cat([x.narrow(dim, 0, rr).flip(dim), x, x.narrow(dim, n - rr, rr).flip(dim)], dim=dim)
        if rr < r:
            pad = (r - rr, r - rr) if dim == -1 else (0, 0, r - rr, r - rr)
            x = F.pad(x, pad, mode="replicate")
        kernel = k.view(1, 1, 1, -1) if dim == -1 else k.view(1, 1, -1, 1)
        x = F.conv2d(x, kernel.expand(c, 1, *kernel.shape[2:]), groups=c)
    return x


def _find_peaks(heat, threshold: float, max_per_part: int = 64) -> list[Peaks]:
    """Local maxima (>= 4 neighbours, zero outside) of the sigma-3 smoothed heatmaps above `threshold`.

    Scores are read on the unsmoothed heatmaps, as in controlnet_aux; one device->host copy per batch.
    At most `max_per_part` peaks per part are kept (the highest scores, still in raster order).
    """
    import torch
    import torch.nn.functional as F

    smooth = _gaussian_blur(heat, 3.0)
    p = F.pad(smooth, (1, 1, 1, 1))
    is_peak = (
        (smooth >= p[..., :-2, 1:-1])
        & (smooth >= p[..., 2:, 1:-1])
        & (smooth >= p[..., 1:-1, :-2])
        & (smooth >= p[..., 1:-1, 2:])
        & (smooth > threshold)
    )
    idx = is_peak.nonzero()  # rows (b, part, y, x) in lexicographic order = part-major raster order
    score = heat[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]]
    rows = torch.cat([idx.double(), score[:, None].double()], dim=1).cpu().numpy()
    out = []
    for b in range(heat.shape[0]):
        r = rows[rows[:, 0] == b]
        r = np.concatenate([_strongest(r[r[:, 1] == p], max_per_part) for p in range(heat.shape[1])])
        out.append(Peaks(xy=r[:, [3, 2]].astype(np.int64), score=r[:, 4], part=r[:, 1].astype(np.int64)))
    return out


def _strongest(rows: np.ndarray, k: int) -> np.ndarray:
    if len(rows) <= k:
        return rows
    keep = np.sort(np.argsort(-rows[:, 4], kind="stable")[:k])
    return rows[keep]


def _group_batch(peaks: list[Peaks], pafs, height: int, paf_threshold: float) -> list[list[np.ndarray]]:
    """Read every PAF sample the grouping needs for the whole batch in one gather, then group per image."""
    import torch

    plans = [limb_sample_points(p) for p in peaks]
    lengths = [len(c) for c, _, _ in plans]
    if sum(lengths) == 0:
        return [[] for _ in peaks]
    b = np.concatenate([np.full(n, i, np.int64) for i, n in enumerate(lengths)])
    c, y, x = (np.concatenate(parts) for parts in zip(*plans))
    index = [torch.from_numpy(a).to(pafs.device) for a in (b, c, y, x)]
    both = torch.stack([pafs[index[0], index[1], index[2], index[3]], pafs[index[0], index[1] + 1, index[2], index[3]]])
    vx, vy = both.double().cpu().numpy()
    bounds = np.cumsum([0, *lengths])
    return [
        group_people(p, vx[s:e], vy[s:e], height, paf_threshold) if e > s else []
        for p, s, e in zip(peaks, bounds[:-1], bounds[1:])
    ]


def _hand_peak(raw: np.ndarray, smooth: np.ndarray, threshold: float) -> tuple[int, int]:
    """controlnet_aux Hand: (x, y) on the 128x128 grid of the raw map's argmax inside the strongest
    connected blob of the smoothed map above `threshold`; (0, 0) when nothing passes."""
    from skimage.measure import label

    binary = smooth > threshold
    if not binary.any():
        return 0, 0
    blobs, n = label(binary, return_num=True, connectivity=2)
    sums = np.bincount(blobs.ravel(), weights=raw.ravel(), minlength=n + 1)[1:]
    keep = np.where(blobs == int(np.argmax(sums)) + 1, raw, 0.0)
    y, x = np.unravel_index(int(np.argmax(keep)), keep.shape)
    return int(x), int(y)
