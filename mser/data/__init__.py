"""Data lists, datasets, corpus parsers and waveform augmentation."""
