"""corrvos.evaluation."""
