"""Data: the bundled Middlebury sample, NYU Depth V2, Sintel, synthetic scenes, sample assembly."""

from .joint import (
    LOWRES_MODES,
    SAMPLINGS,
    AssembleJointUpsamplingInputs,
    JointSample,
    SensorConfig,
    aligned_area_lowres,
    make_lowres,
)
from .middlebury import MiddleburySample, load_middlebury
from .nyu import NYUDepthV2, nyu_indices
from .sintel import SintelFlow, read_flo, sintel_split_labels, write_flo
from .synthetic import SceneConfig, SyntheticScenes, dead_leaves_scene

__all__ = [
    "LOWRES_MODES",
    "SAMPLINGS",
    "AssembleJointUpsamplingInputs",
    "JointSample",
    "MiddleburySample",
    "NYUDepthV2",
    "SceneConfig",
    "SensorConfig",
    "SintelFlow",
    "SyntheticScenes",
    "aligned_area_lowres",
    "dead_leaves_scene",
    "load_middlebury",
    "make_lowres",
    "nyu_indices",
    "read_flo",
    "sintel_split_labels",
    "write_flo",
]
