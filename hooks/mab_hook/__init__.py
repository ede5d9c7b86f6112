"""mab-hook: a git pre-push gate that builds the affected multi-arch Docker images."""
