"""Metrics for segmentation at several pixel sizes: pure computation (numpy/scipy/scikit-image; the
tables and summaries in pandas), no IO.

semantic    whole-image IoU of 0/1/2 masks (inner, edge, their mean "ALL", binary, all labels)
instance    matching at IoU > 0.5, per-object IoU, TP/FP/FN, precision, recall, F1, accuracy, PQ
compat      the original ReScale4DL crop-based per-object IoU (to check against published tables)
morphology  area, equivalent diameter, width, inscribed diameter, perimeter, circularity
coverage    % diameter / % area per pixel, throughput, bytes per object
stats       bootstrap CI, paired tests, distribution distances, group differences
tables      one GT/prediction pair -> per-object rows + one per-image row (sampled or native grid)
summaries   those rows -> one row per task, grid and factor; factors against the best; conditions
"""

from rescale4dl_bmz.metrics.compat import CropIoU, crop_iou_rescale4dl
from rescale4dl_bmz.metrics.coverage import bytes_per_object, pct_area_per_pixel, pct_diameter_per_pixel, throughput
from rescale4dl_bmz.metrics.instance import LabelIndex, Matching, index_labels, match_instances
from rescale4dl_bmz.metrics.morphology import object_morphology, object_width
from rescale4dl_bmz.metrics.semantic import SemanticScores, binary_iou, check_semantic, semantic_scores
from rescale4dl_bmz.metrics.stats import (DistributionDistance, GroupDifference, PairedDifference, PairedTest, bootstrap_ci,
                    distribution_distance, finite_mean, finite_median, group_difference, hedges_g, paired_difference,
                    paired_test)

__all__ = [
    "CropIoU", "DistributionDistance", "GroupDifference", "LabelIndex", "Matching", "PairedDifference", "PairedTest",
    "SemanticScores", "binary_iou", "bootstrap_ci", "bytes_per_object", "check_semantic", "crop_iou_rescale4dl",
    "distribution_distance", "finite_mean", "finite_median", "group_difference", "hedges_g", "index_labels",
    "match_instances", "object_morphology", "object_width", "paired_difference", "paired_test", "pct_area_per_pixel",
    "pct_diameter_per_pixel", "semantic_scores", "throughput",
]
