"""ft_pipeline: fine-tune, evaluate and deploy LoRA adapters as Dagster assets."""

__version__ = "0.1.0"
