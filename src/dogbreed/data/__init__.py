"""Datasets on disk: layout, checks, the decode cache and batches."""
