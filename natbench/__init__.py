"""natbench: benchmark and reproducibility harness for Neighborhood Attention Transformers."""

__version__ = "0.1.0"
