"""Self-hostable A/B experiments service, wire-compatible with PostHog's Experiments API."""
