"""The Baton Kubernetes operator (kopf) and its pure rollout state machine."""
