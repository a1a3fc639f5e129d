"""The command layer: the only place that imports Typer and Rich."""
