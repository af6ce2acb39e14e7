"""Diagnostics: ArviZ conversion, summaries and plots."""
