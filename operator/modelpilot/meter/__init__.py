"""The meter: a sidecar reverse proxy that measures every request to the model server."""
