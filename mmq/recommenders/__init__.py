"""Sequential recommenders over leave-one-out splits: shared batching and evaluation helpers."""
