"""Seed data shipped with the app (the starting catalogue)."""
