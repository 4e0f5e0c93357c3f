"""Concurrency autoscaling: the scaling rule (pure) and its inputs."""
