"""corrvos.data."""
