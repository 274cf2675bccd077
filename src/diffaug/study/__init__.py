"""The study: a grid of DVC experiments, run on the DVC queue or Ray, read back and reported."""
