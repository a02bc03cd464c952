"""The plugin contract (``contract``) and the registries plugins fill (``hooks``)."""

from tollway.plugins.contract import Host, Phase, Plugin, RawRoute, Route

__all__ = ["Host", "Phase", "Plugin", "RawRoute", "Route"]
