"""Stateless UI pieces: they take values or Vars and never import services."""
