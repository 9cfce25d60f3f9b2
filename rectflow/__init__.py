"""rectflow: rectified flows, reflow and distillation on Accelerate.

The conventions (time direction, shapes, names) are documented in :mod:`rectflow.path`.
"""
__version__ = "0.1.0"
