"""The stage runner: the project, stage declarations and keys, code sets, dvc.yaml."""
