"""Restoring backups: which one (selection), how its bytes reach the server (streams, feed),
what is restored and checked (engine), confirmations, and copying lost rows back (rows)."""
