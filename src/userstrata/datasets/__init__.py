"""Bundled data: the CDNOW purchases and a seeded simulator of a Chinese virtual-goods shop."""

from userstrata.datasets.cdnow import load_cdnow
from userstrata.datasets.shop import ARCHETYPES, simulate_shop

__all__ = ["ARCHETYPES", "load_cdnow", "simulate_shop"]
