"""OpenAI-compatible HTTP server over the continuous-batching engine (docs/serve.md)."""

from slmkit.serve.app import create_app
from slmkit.serve.provider import ModelProvider
from slmkit.settings import ServerSettings

__all__ = ["ModelProvider", "ServerSettings", "create_app"]
