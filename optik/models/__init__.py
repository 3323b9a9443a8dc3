"""Classifier wrapper, CNN spec builder, model registry, safe save/load."""
from optik.models.classifier import Classifier
from optik.models.cnn import build_cnn, parse_spec
from optik.models.io import load_classifier, save_classifier
from optik.models.registry import MODELS, create_classifier, list_models, register_model, resolve_arch

__all__ = ["MODELS", "Classifier", "build_cnn", "create_classifier", "list_models", "load_classifier",
           "parse_spec", "register_model", "resolve_arch", "save_classifier"]
