"""Foundations every other layer uses: errors, registries, config, run folders, seeding, the image contract."""
