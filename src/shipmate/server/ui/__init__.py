"""A small read-only web UI: environments, deployments and recent events, rendered on the server."""
