"""Lightning task, data module, callbacks and the Trainer factory."""
