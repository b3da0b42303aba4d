"""Model kinds: how to build, export, feed and evaluate one family of models.

Each kind module offers the same functions (see ``model_compression.registry.MODEL_KINDS``);
the pipeline stages call them with explicit paths and configs, never with global state.
"""
