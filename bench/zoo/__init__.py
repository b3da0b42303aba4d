"""A zoo of three structurally different models for the "bring your own model" path.

A depthwise-separable CNN, a patch transformer and a row GRU, trained on the real
Fashion-MNIST and exported to ONNX with their eval files, for ``kind: custom`` catalogue
entries: ``python -m bench.zoo.build OUT_DIR`` (see ``build.py``).
"""
