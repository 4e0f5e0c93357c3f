"""ModelPilot: a Kubernetes operator for self-hosted model serving."""

__version__ = "0.1.0"
