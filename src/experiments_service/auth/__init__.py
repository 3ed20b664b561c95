"""Personal API keys (scoped, per user) and project API keys (evaluation and capture)."""
