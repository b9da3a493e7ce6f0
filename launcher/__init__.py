"""Entry points: the worker torchrun starts, launch helpers, export and the demo pipeline."""
