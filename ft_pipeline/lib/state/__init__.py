"""The state folder, atomic writes and MLflow tracking: the bottom of the stack."""
