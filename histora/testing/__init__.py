"""Test and benchmark helpers that ship with the package (never imported by the app)."""

from histora.testing.fake_openai_server import FakeOpenAIServer, ModelScript

__all__ = ["FakeOpenAIServer", "ModelScript"]
