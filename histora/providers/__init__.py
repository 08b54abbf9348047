"""The outside world behind Protocols: chat models, vector store, and their fakes."""
