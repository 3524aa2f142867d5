"""tokenized_dataset (and, later, fine_tuned_adapter), and their checks."""
