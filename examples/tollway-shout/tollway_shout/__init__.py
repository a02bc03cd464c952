"""An example tollway extension, installed as its own package: a provider and a tool."""
