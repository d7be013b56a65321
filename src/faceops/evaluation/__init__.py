"""Measuring models: verification metrics, LFW pairs, model evaluation, plots, the promotion gate and the model bundle."""
