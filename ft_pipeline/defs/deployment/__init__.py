"""deployed_model: merge, register, move the champion alias."""
