"""corrvos.models."""
