"""Base models and what training, evaluation and serving share.

Loading, heads, the LoRA config, batching, label scoring and the prefix cache.
"""
