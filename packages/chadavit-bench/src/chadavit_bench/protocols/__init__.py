"""Evaluation protocols on frozen features (numpy arrays in, metrics out), one module each."""
