"""gradleak: how much private data leaks from federated-learning client updates."""

from __future__ import annotations

__version__ = "0.1.0"
