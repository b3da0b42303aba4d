"""The pipeline's stages, one module per stage, each declaring ``STAGE`` (``tasks.core.stage``).

Stage modules never import one another: what two stages share lives in ``tasks/kinds``,
``tasks/gates``, ``tasks/storage``, ``tasks/present`` or the library. The run order and the
lookup are in ``tasks/core/pipeline.py``.
"""
