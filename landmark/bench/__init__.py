"""Benchmarks: data, training and inference speed of the landmark models, and our detectors, demo and model
beside their peers."""
