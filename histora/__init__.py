"""Histora: talk with history."""

__version__ = "0.1.0"
