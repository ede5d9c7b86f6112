"""mab-hook: a git pre-push gate that builds the affected multi-arch Docker images."""

__version__ = "0.1.0"
