"""edgevlm-eval: evaluate cloud-edge collaboration of vision-language models on real-time video."""

__version__ = "0.1.0"
