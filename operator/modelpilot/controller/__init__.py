"""The kopf operator: thin handlers that connect Kubernetes to the pure logic."""
