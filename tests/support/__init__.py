"""Helpers for the tests. The shared fixtures that use them are in tests/conftest.py.

docker_env: the Docker engine, test labels, cleanup and image selection.
postgres:   PostgreSQL 15 containers (PgServer, start_postgres).
s3:         a SeaweedFS S3 server on loopback (S3Server).
"""
