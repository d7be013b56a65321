"""Training: the run config, trunk-activation features, fitting (single process and DDP) and the tracked run."""
