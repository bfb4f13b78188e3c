"""What Prometheus, Docker's health check and a person with a browser see.

Modules: ``metrics`` (every metric defined once), ``health`` (the /healthz verdict as a pure
function of its state), ``httpserver`` (/metrics, /healthz and the status page /), ``watcher``
(metrics and health brought up to date with the manifests on disk), ``status`` (what the status
page shows, gathered) and ``statuspage`` (that as HTML)."""
