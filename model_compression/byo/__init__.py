"""Bring your own model: catalogue entries of kind ``custom``.

A platform team's model arrives as an ONNX file, safetensors weights plus a factory
function, or a TorchScript / ``torch.export`` program, with an evaluation spec naming its
task type and data. ``spec`` validates the entry, ``load`` opens the model and checks it
against the declared inputs, ``data`` reads and preprocesses the examples, ``evaluate``
scores outputs for the task.
"""
