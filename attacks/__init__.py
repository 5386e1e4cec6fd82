"""Attacks on trained models and the theoretical bounds they are compared with."""
