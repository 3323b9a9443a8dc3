"""Generative models: DCGAN and VAE modules, their losses, sampling and interpolation, and sample quality."""
