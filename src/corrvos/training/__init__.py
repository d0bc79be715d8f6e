"""corrvos.training."""
