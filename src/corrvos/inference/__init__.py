"""corrvos.inference."""
