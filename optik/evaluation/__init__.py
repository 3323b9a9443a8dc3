"""Confusion matrix, per-class and averaged metrics, figures."""
from optik.evaluation.evaluate import evaluate_model, predict_proba
from optik.evaluation.figures import confusion_figure, save_figure
from optik.evaluation.metrics import (classification_report, confusion_matrix, metrics_from_confusion,
                                    one_vs_rest_counts, top_k_accuracy)

__all__ = ["classification_report", "confusion_figure", "confusion_matrix", "evaluate_model",
           "metrics_from_confusion", "one_vs_rest_counts", "predict_proba", "save_figure", "top_k_accuracy"]
