"""What Prometheus and Docker's health check see.

Modules: ``metrics`` (every metric defined once), ``health`` (the /healthz verdict as a pure
function of its state), ``httpserver`` (/metrics and /healthz), ``watcher`` (metrics and
health brought up to date with the manifests on disk)."""
