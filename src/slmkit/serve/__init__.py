"""OpenAI-compatible HTTP server over the continuous-batching engine."""

from slmkit.serve.app import ServerSettings, create_app
from slmkit.serve.provider import ModelProvider

__all__ = ["ModelProvider", "ServerSettings", "create_app"]
