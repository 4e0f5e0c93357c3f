"""Pods -> ModelDeployment status (pure): replicas, readiness, restarts, conditions."""
