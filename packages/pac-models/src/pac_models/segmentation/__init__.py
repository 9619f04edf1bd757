"""Semantic segmentation (docs/semantics.md §B): FCN-8s backbones, PAC-FCN, PAC-CRF heads, the
model-name grammar, VOC 2012 + SBD data and mIoU.

Registered models (``create_model(name, num_classes=21)``): ``fcn8s``, ``fcn8saltpad``,
``fcn8spac`` and every name of the grammar (:mod:`pac_models.segmentation.grammar`), e.g.
``fcn8s_crfi5p4d5641p4d5161`` (FCN-8s + PacCRF) or ``fcn8spac_crfi5p4d5641p4d5161``.
"""

from __future__ import annotations

from .api import refine
from .builders import README_MODELS, build_model
from .crf_head import ModelWithConvCrf, ModelWithCrf, freeze_backbone
from .data import (
    MEAN_RGB,
    VOC_CLASSES,
    SegmentationInputs,
    SegSample,
    VOCSegmentation,
    image_to_input,
    input_to_image,
    split_ids,
)
from .grammar import CrfSpec, EdgeSpec, ModelName, parse_name
from .metrics import IGNORE_INDEX, ConfusionMatrix, segmentation_loss
from .models import FCN8s, FCN8sAltPad, FCN8sPac, load_backbone_weights
from .train import SegTrainConfig, evaluate, train

__all__ = [
    "IGNORE_INDEX",
    "MEAN_RGB",
    "README_MODELS",
    "VOC_CLASSES",
    "ConfusionMatrix",
    "CrfSpec",
    "EdgeSpec",
    "FCN8s",
    "FCN8sAltPad",
    "FCN8sPac",
    "ModelName",
    "ModelWithConvCrf",
    "ModelWithCrf",
    "SegSample",
    "SegTrainConfig",
    "SegmentationInputs",
    "VOCSegmentation",
    "build_model",
    "evaluate",
    "freeze_backbone",
    "image_to_input",
    "input_to_image",
    "load_backbone_weights",
    "parse_name",
    "refine",
    "segmentation_loss",
    "split_ids",
    "train",
]
