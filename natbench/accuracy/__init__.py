"""ImageNet top-1/top-5 evaluation with the papers' recipe, and the cost of running NAT without RPB."""

from natbench.accuracy.evaluate import compare_backends, evaluate

__all__ = ["compare_backends", "evaluate"]
