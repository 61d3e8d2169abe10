"""Training jobs: the loop, its callbacks, the stages of the default recipe, records and tracking."""
