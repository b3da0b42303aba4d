"""Presentation: the console table, the HTML report, the model card, the Prefect UI artifacts."""
