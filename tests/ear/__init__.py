"""Tests of the ear: model, training, probing."""
