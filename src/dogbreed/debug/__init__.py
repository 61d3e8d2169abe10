"""Debugger and profiler for training jobs: hooks that record, rules that judge, a report to read."""
