"""Interpretability ("learn from the weights"): first-layer filters, feature maps, saliency and Grad-CAM."""
from optik.interpret.figures import feature_map_grid, filter_grid, heatmap_grid, normalize_maps, overlay
from optik.interpret.gradcam import gradcam
from optik.interpret.layers import (conv_layers, default_target_layer, feature_maps, first_layer_filters,
                                    spatial_layers, trace_layers)
from optik.interpret.saliency import saliency

__all__ = ["conv_layers", "default_target_layer", "feature_map_grid", "feature_maps", "filter_grid",
           "first_layer_filters", "gradcam", "heatmap_grid", "normalize_maps", "overlay", "saliency",
           "spatial_layers", "trace_layers"]
