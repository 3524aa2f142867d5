"""The training loop, checkpoints, processes, the adapter job and its key."""
