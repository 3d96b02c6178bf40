"""ViTPose (Xu et al. 2022, arXiv 2204.12484) body pose with an RT-DETR person detector, drawn as OpenPose.

A permissive drop-in for Joint's CMU OpenPose labels (the CMU body model is non-commercial):
top-down pose as the transformers ViTPose docs run it — RT-DETR (`RTDetrForObjectDetection`,
Apache-2.0) finds people, ViTPose (`VitPoseForPoseEstimation`, Apache-2.0) predicts the 17
COCO keypoints in each person box — then the keypoints are mapped to OpenPose's 18 (neck =
mid-shoulders, as OpenPose defines it) and drawn by the project's OpenPose renderer
(annotators/pose.py, controlnet_aux's `draw_poses`), so the label looks like Joint's.

Batched where it pays: every image of a call goes through the detector in one forward
(RT-DETR takes a fixed 640 x 640 input), and every person crop of the call through ViTPose in
chunks of `max_batch`. Crops are cut on the device with one `grid_sample` per image, with the
same box padding (x1.25), aspect fix (192:256) and unbiased affine mapping as
`VitPoseImageProcessor`; heatmaps are decoded by that processor's own `keypoints_from_heatmaps`
(argmax + DARK refinement, kernel 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotators.base import AnnotationError, Annotator, AnnotatorConfig, check_image
from annotators.loading import controlnet_aux, load_pretrained
from annotators.pose import OpenposeConfig, _body_result, render_poses
from annotators.preprocess import IMAGENET_MEAN, IMAGENET_STD

# OpenPose-18 body order -> COCO-17 index (-1: the neck, which COCO lacks). OpenPose: nose, neck,
# r-shoulder, r-elbow, r-wrist, l-shoulder, l-elbow, l-wrist, r-hip, r-knee, r-ankle, l-hip, l-knee,
# l-ankle, r-eye, l-eye, r-ear, l-ear; COCO: nose, l/r-eye, l/r-ear, l/r-shoulder, l/r-elbow,
# l/r-wrist, l/r-hip, l/r-knee, l/r-ankle (mmpose's coco.py keypoint_info).
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_SHOULDERS = (5, 6)


@dataclass(frozen=True)
class VitPoseConfig(AnnotatorConfig):
    """ViTPose + RT-DETR settings. `model_id` is the pose model; `detector_id` the person detector."""

    detector_id: str | None = None
    detector_revision: str | None = None
    detector_size: int = 640  # RT-DETR's fixed input (PekingU/rtdetr_r50vd preprocessor_config.json)
    person_threshold: float = 0.3  # detection score a person needs (the transformers ViTPose example)
    keypoint_threshold: float = 0.3  # heatmap score a keypoint needs to be drawn (DWPose's draw threshold)
    max_people: int = 20
    box_padding: float = 1.25  # VitPoseImageProcessor box_to_center_and_scale padding_factor
    dark_kernel: int = 11  # VitPoseImageProcessor.post_process_pose_estimation kernel_size
    draw_resolution: int = OpenposeConfig.draw_resolution  # the OpenPose renderer's canvas short side
    resolution: int = 0
    multiple_of: int = 1
    max_batch: int = 16


class VitPoseAnnotator(Annotator):
    """OpenPose-18 body skeletons from RT-DETR boxes + ViTPose keypoints, on black; None when no person."""

    domain = "openpose"
    out_channels = 3

    def __init__(self, config: VitPoseConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import torch
        from transformers import (
            RTDetrForObjectDetection,
            RTDetrImageProcessor,
            VitPoseForPoseEstimation,
            VitPoseImageProcessor,
        )

        controlnet_aux("vitpose_base", "controlnet_aux.open_pose")  # the OpenPose renderer draws with it
        name = type(self).__name__
        det_id, det_rev = config.detector_id, config.detector_revision
        self.detector = load_pretrained(RTDetrForObjectDetection.from_pretrained, name, det_id, det_rev)
        self.detector = self.detector.eval().to(device)
        self.detector_processor = load_pretrained(RTDetrImageProcessor.from_pretrained, name, det_id, det_rev)
        labels = {v.lower(): k for k, v in self.detector.config.id2label.items()}
        if "person" not in labels:
            raise ValueError(f"{name}: detector '{det_id}' has no 'person' class (labels: {sorted(labels)[:5]}...)")
        self.person = int(labels["person"])
        self.pose = load_pretrained(VitPoseForPoseEstimation.from_pretrained, name, config.model_id, config.revision)
        self.pose = self.pose.eval().to(device)
        self.pose_processor = load_pretrained(VitPoseImageProcessor.from_pretrained, name, config.model_id,
                                              config.revision)
        size = self.pose_processor.size
        self.crop_hw = (int(size["height"]), int(size["width"]))  # 256 x 192
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    # ----- labelling --------------------------------------------------------------------------
    def annotate(self, images: Sequence[np.ndarray]) -> list[np.ndarray | AnnotationError | None]:
        import torch

        for img in images:
            check_image(img)
        out: list[np.ndarray | None] = [None] * len(images)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(images), self.config.max_batch):
                chunk = list(range(start, min(start + self.config.max_batch, len(images))))
                boxes = self.detect([images[i] for i in chunk])
                people = self.keypoints([images[i] for i in chunk], boxes)
                for i, persons in zip(chunk, people, strict=True):
                    out[i] = self.render(persons, images[i].shape[:2]) if persons else None
        return out

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Person boxes per image: float32 Nx4 (x, y, w, h) in the image's pixels, best first."""
        side = self.config.detector_size
        # RT-DETR's processor: resize to 640 x 640 (not keeping aspect), rescale to [0, 1], no normalisation.
        x = self._to_tensor(images, (side, side))
        outputs = self.detector(pixel_values=x)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        sizes = [im.shape[:2] for im in images]
        found = self.detector_processor.post_process_object_detection(
            outputs, threshold=self.config.person_threshold, target_sizes=sizes
        )
        boxes = []
        for result, (h, w) in zip(found, sizes, strict=True):
            keep = result["labels"] == self.person
            xyxy, score = result["boxes"][keep], result["scores"][keep]
            xyxy = xyxy[score.argsort(descending=True)][: self.config.max_people].cpu().numpy()
            xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
            xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
            xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float32)
            boxes.append(xywh[(xywh[:, 2] >= 1) & (xywh[:, 3] >= 1)])
        return boxes

    def keypoints(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Per image, per person: COCO-17 keypoints as float 17x3 (x, y, score) in the image's pixels."""
        import torch
        from transformers.models.vitpose.image_processing_vitpose import box_to_center_and_scale

        h_c, w_c = self.crop_hw
        centers, scales, crops = [], [], []
        for image, image_boxes in zip(images, boxes, strict=True):
            if not len(image_boxes):
                continue
            cs = [box_to_center_and_scale(b, w_c, h_c, padding_factor=self.config.box_padding) for b in image_boxes]
            c, s = np.stack([p[0] for p in cs]), np.stack([p[1] for p in cs])
            centers.append(c)
            scales.append(s)
            crops.append(self._crops(image, c, s))
        if not crops:
            return [[] for _ in images]
        x = (torch.cat(crops) - self._mean) / self._std
        heatmaps = torch.cat([self.pose(pixel_values=part).heatmaps.float() for part in x.split(self.config.max_batch)])
        coords, scores = self.pose_processor.keypoints_from_heatmaps(
            heatmaps.cpu().numpy(), np.concatenate(centers), np.concatenate(scales), kernel=self.config.dark_kernel
        )
        people, k = [], 0
        for image_boxes in boxes:
            n = len(image_boxes)
            people.append([np.concatenate([coords[j], scores[j]], axis=1) for j in range(k, k + n)])
            k += n
        return people

    def _crops(self, image: np.ndarray, centers: np.ndarray, scales: np.ndarray):
        """Nx3x256x192 crops in [0, 1]: the box (center, scale x 200 px) mapped onto the crop with
        corner pixel centres aligned, as VitPoseImageProcessor's unbiased affine (get_warp_matrix)."""
        import torch
        import torch.nn.functional as F

        h_c, w_c = self.crop_hw
        h, w = image.shape[:2]
        img = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        c = torch.from_numpy(centers).to(self.device, torch.float32)
        size = torch.from_numpy(scales).to(self.device, torch.float32) * 200.0  # box w, h in pixels
        i = torch.arange(w_c, device=self.device, dtype=torch.float32) - (w_c - 1) / 2
        j = torch.arange(h_c, device=self.device, dtype=torch.float32) - (h_c - 1) / 2
        xs = c[:, 0:1] + i[None] * (size[:, 0:1] / (w_c - 1))  # N x w_c source x
        ys = c[:, 1:2] + j[None] * (size[:, 1:2] / (h_c - 1))  # N x h_c source y
        # Pixel -> grid_sample's [-1, 1] with align_corners=True; outside the image reads zeros, as warpAffine.
        gx = (2 * xs / max(w - 1, 1) - 1)[:, None, :].expand(-1, h_c, -1)
        gy = (2 * ys / max(h - 1, 1) - 1)[:, :, None].expand(-1, -1, w_c)
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(img.expand(len(c), -1, -1, -1), grid, mode="bilinear", align_corners=True)

    # ----- drawing ----------------------------------------------------------------------------
    def render(self, people: list[np.ndarray], size: tuple[int, int]) -> np.ndarray | None:
        """COCO-17 keypoints -> OpenPose-18 skeletons drawn by the OpenPose renderer; None if nothing is drawn."""
        from controlnet_aux.open_pose import PoseResult

        h, w = size
        poses = []
        for kp in people:
            body = openpose18(kp, self.config.keypoint_threshold)
            if sum(p is not None for p in body) < 2:  # no limb can be drawn
                continue
            norm = [None if p is None else _keypoint(p[0] / w, p[1] / h) for p in body]
            poses.append(PoseResult(_body_result(norm), None, None, None))
        return render_poses(poses, size, self.config.draw_resolution) if poses else None  # the OpenPose renderer


def openpose18(coco: np.ndarray, threshold: float) -> list[tuple[float, float] | None]:
    """COCO-17 keypoints (17x3: x, y, score) -> OpenPose-18 body points (x, y), None where not confident.

    The neck, which COCO has not, is the midpoint of the shoulders when both are confident.
    """
    ok = coco[:, 2] >= threshold
    out: list[tuple[float, float] | None] = []
    for k in OPENPOSE_FROM_COCO:
        if k >= 0:
            out.append((float(coco[k, 0]), float(coco[k, 1])) if ok[k] else None)
        elif ok[list(COCO_SHOULDERS)].all():
            mid = coco[list(COCO_SHOULDERS), :2].mean(axis=0)
            out.append((float(mid[0]), float(mid[1])))
        else:
            out.append(None)
    return out


def _keypoint(x: float, y: float):
    from controlnet_aux.open_pose.body import Keypoint

    return Keypoint(x, y)


# ----- presets ------------------------------------------------------------------------------------
# usyd-community/vitpose-base-simple (model card: apache-2.0; COCO AP 75.8, ViTPose paper Table 1):
# ViT-B, 256 x 192 crops, 64 x 48 heatmaps. PekingU/rtdetr_r50vd_coco_o365 (model card: apache-2.0),
# the detector of transformers' ViTPose example. Revisions "main": no verified commit hash with all
# files was available offline; pin one when mirroring.
VITPOSE_BASE = VitPoseConfig(
    model_id="usyd-community/vitpose-base-simple",
    revision="main",
    detector_id="PekingU/rtdetr_r50vd_coco_o365",
    detector_revision="main",
)
