"""mser: speech emotion recognition training and inference."""
__version__ = "0.1.0"
