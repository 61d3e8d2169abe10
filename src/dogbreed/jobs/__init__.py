"""Bookkeeping every kind of job shares: names and their folders, records, owning processes, logs, MLflow tracking,
the model registry and endpoint records. `train/`, `tune/` and `serve/` build on this; it imports none of them."""
