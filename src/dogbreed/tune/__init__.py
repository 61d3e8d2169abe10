"""Hyperparameter tuning jobs: many training jobs over ranges, searched by Optuna, resumable after a crash."""
