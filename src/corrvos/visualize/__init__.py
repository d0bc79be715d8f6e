"""corrvos.visualize."""
