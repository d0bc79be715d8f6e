"""corrvos.losses."""
