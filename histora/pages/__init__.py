"""One module per route; each page's State lives beside it."""
