"""Federated client simulation (protocols) and server-side model preparation."""

from .protocol import PROTOCOLS, Protocol, client_update, compute_update

__all__ = ["PROTOCOLS", "Protocol", "client_update", "compute_update"]
