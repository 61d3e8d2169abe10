"""dogbreed: fine-tune, tune, debug, register and serve dog-breed classifiers on your own machine or cluster."""

__version__ = "0.2.0"
