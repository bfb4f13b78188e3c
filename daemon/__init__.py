"""pg-backup-sidecar: scheduled, verified PostgreSQL backups next to a database container."""
__version__ = "0.1.0"
