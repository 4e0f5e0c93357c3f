"""The autoscaling advisor: Prometheus history -> diagnoses -> recommendations (pure logic
apart from `source`, which does the querying)."""
