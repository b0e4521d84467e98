"""Diagnostics that work on any nn.Module."""
