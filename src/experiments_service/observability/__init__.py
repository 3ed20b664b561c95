"""Operating the service: structured logs, request ids, Prometheus metrics, readiness, version."""
