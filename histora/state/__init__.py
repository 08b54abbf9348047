"""Cross-page Reflex state: only the signed-in viewer."""
