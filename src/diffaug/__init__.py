"""diffaug: dataset augmentation with diffusion models, as a DVC experiment pipeline."""
