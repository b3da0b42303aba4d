"""The library side of the catalogue's model kinds: build, load, export and calibrate one
family of models, with explicit paths and configs. The pipeline reaches them through the
kind adapters in ``tasks/kinds``; each kind's quality suite is in ``evaluate/``."""
