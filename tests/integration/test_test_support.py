"""The shared fixtures work: real PostgreSQL containers, a real S3 server, the tools."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.support import docker_env


def host_psql(server, sql: str, db: str, password: str | None) -> subprocess.CompletedProcess:
    """Run psql on the host against the server's published port."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is not installed on the host (scripts/test installs postgresql-client-15)")
    environment = {**os.environ, "PGPASSWORD": password or "", "PGCONNECT_TIMEOUT": "10"}
    command = [psql, "-X", "-At", "-w", "-h", server.host, "-p", str(server.port), "-U", server.user, "-d", db]
    return subprocess.run(
        [*command, "-c", sql], check=False, env=environment, capture_output=True, text=True, timeout=60
    )


class TestLeftoverRule:
    def test_own_session_is_always_cleaned(self):
        """Whatever this run labelled is removed at its end, even while running."""
        assert docker_env.is_leftover(docker_env.docker_labels(), in_use=True)

    def test_live_run_of_another_session_is_kept(self):
        """A concurrent test run's containers are not touched."""
        labels = {**docker_env.docker_labels(), docker_env.SESSION_LABEL: "another-run"}
        assert not docker_env.is_leftover(labels, in_use=True)

    def test_dead_run_is_cleaned(self):
        """Containers of a test run whose process is gone are left over."""
        labels = {docker_env.TEST_LABEL: "1", docker_env.SESSION_LABEL: "gone", docker_env.PID_LABEL: "999999999"}
        assert docker_env.is_leftover(labels, in_use=True)

    def test_unlabelled_run_is_cleaned_only_when_unused(self):
        """Without a pid label, only stopped objects count as left over."""
        labels = {docker_env.TEST_LABEL: "1"}
        assert not docker_env.is_leftover(labels, in_use=True)
        assert docker_env.is_leftover(labels, in_use=False)


class TestDockerClient:
    def test_answers_ping(self, docker_client):
        """The session client talks to a live engine."""
        assert docker_client.ping() is True

    def test_python_base_image_has_python_and_postgres_client(self, docker_client):
        """The stand-in for python:3.11-slim runs Python 3.11, pip and pg_dump 15."""
        docker_env.build_local_images("python")
        output = docker_env.run_to_completion(
            docker_client, docker_env.LOCAL_PYTHON_IMAGE,
            command=["sh", "-c", "python --version && pip --version && pg_dump --version"],
        ).decode()
        assert "Python 3.11" in output
        assert "pip " in output
        assert "pg_dump (PostgreSQL) 15" in output


class TestPostgresFactory:
    def test_accepts_tcp_connection_with_password(self, postgres_factory):
        """A client on the host reaches the published port and logs in with the password."""
        server = postgres_factory()
        result = host_psql(server, "SELECT current_user || ' ' || current_database()", "authdb", "secret")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "postgres authdb"

    def test_rejects_a_wrong_password_over_tcp(self, postgres_factory):
        """Host connections need the password (scram-sha-256), as with the official image."""
        server = postgres_factory(databases=())
        result = host_psql(server, "SELECT 1", "postgres", "not-the-password")
        assert result.returncode != 0
        assert "password authentication failed" in result.stderr

    def test_publishes_only_on_loopback(self, postgres_factory):
        """The host port is bound to 127.0.0.1 and nowhere else."""
        server = postgres_factory(databases=())
        server.container.reload()
        bindings = server.container.attrs["NetworkSettings"]["Ports"]["5432/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]

    def test_creates_the_requested_databases(self, postgres_factory):
        """Every database asked for exists once the factory returns."""
        server = postgres_factory()
        names = set(server.psql("SELECT datname FROM pg_database").splitlines())
        assert {"authdb", "apidb", "admindb"} <= names

    def test_container_is_labelled_and_uniquely_named(self, postgres_factory):
        """Test containers carry the cleanup label and a random suffix."""
        first, second = postgres_factory(databases=()), postgres_factory(databases=())
        assert first.container.labels[docker_env.TEST_LABEL] == "1"
        assert first.name != second.name
        assert first.port != second.port

    def test_pg_dumpall_through_docker_exec_as_root(self, postgres_factory):
        """`docker exec CONTAINER pg_dumpall -U postgres` works as root over the local socket."""
        server = postgres_factory()
        server.psql("CREATE TABLE users (name text); INSERT INTO users VALUES ('alice');", db="authdb")
        whoami = subprocess.run(["docker", "exec", server.name, "id", "-u"], capture_output=True, text=True, check=True)
        assert whoami.stdout.strip() == "0"
        dump = subprocess.run(
            ["docker", "exec", server.name, "pg_dumpall", "-U", "postgres"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dump.returncode == 0, dump.stderr
        assert "CREATE DATABASE authdb" in dump.stdout
        assert "alice" in dump.stdout

    def test_psql_runs_scripts_and_raises_with_stderr(self, postgres_factory):
        """psql() runs several statements, returns rows, and fails loudly on an error."""
        server = postgres_factory(databases=("apidb",))
        output = server.psql(
            "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2); SELECT n FROM t ORDER BY n;", "apidb"
        )
        assert output == "1\n2"
        with pytest.raises(AssertionError, match="no_such_table"):
            server.psql("SELECT * FROM no_such_table", "apidb")

    def test_stop_and_start_keep_data_and_port(self, postgres_factory):
        """A stopped server comes back on the same port with its data."""
        server = postgres_factory(databases=("apidb",))
        server.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);", "apidb")
        port = server.port
        server.stop()
        server.container.reload()
        assert server.container.status == "exited"
        server.start()
        assert server.psql("SELECT n FROM kept", "apidb") == "42"
        assert host_psql(server, "SELECT n FROM kept", "apidb", "secret").stdout.strip() == "42"
        assert server.port == port

    def test_other_user_and_named_volume(self, postgres_factory, docker_volume_factory):
        """POSTGRES_USER is honoured and PGDATA can live on a named volume that outlives the container."""
        volume = docker_volume_factory()
        first = postgres_factory(user="backup", password="pw", databases=("appdb",), volume=volume)
        first.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7);", "appdb")
        assert first.psql("SELECT current_user") == "backup"
        docker_env.remove_container(first.container)
        second = postgres_factory(user="backup", password="pw", databases=("appdb",), volume=volume)
        assert second.psql("SELECT n FROM kept", "appdb") == "7"


class TestS3Server:
    def test_put_and_get_with_the_right_keys(self, s3_server):
        """An object written with boto3 reads back the same, in the server's own bucket."""
        client = s3_server.client()
        client.put_object(Bucket=s3_server.bucket, Key="dumps/a.sql.gz", Body=b"payload")
        body = client.get_object(Bucket=s3_server.bucket, Key="dumps/a.sql.gz")["Body"].read()
        assert body == b"payload"
        assert s3_server.endpoint_url.startswith("http://127.0.0.1:")

    def test_rejects_a_wrong_secret(self, s3_server):
        """Credentials are enforced: a wrong secret gets SignatureDoesNotMatch."""
        intruder = s3_server.client(aws_secret_access_key="wrong-secret")
        with pytest.raises(ClientError) as raised:
            intruder.list_objects_v2(Bucket=s3_server.bucket)
        assert raised.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    def test_multipart_upload(self, s3_server):
        """Multipart uploads complete (the daemon streams dumps this way)."""
        client = s3_server.client()
        key = "big.bin"
        upload = client.create_multipart_upload(Bucket=s3_server.bucket, Key=key)
        parts = []
        for number, chunk in enumerate((b"a" * 5 * 1024 * 1024, b"b" * 1024), start=1):
            part = client.upload_part(
                Bucket=s3_server.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=chunk
            )
            parts.append({"ETag": part["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=s3_server.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        assert client.head_object(Bucket=s3_server.bucket, Key=key)["ContentLength"] == 5 * 1024 * 1024 + 1024

    def test_stop_and_start_keep_objects(self, s3_server):
        """S3 can be taken down and brought back on the same address with its data."""
        client = s3_server.client()
        client.put_object(Bucket=s3_server.bucket, Key="kept", Body=b"still here")
        s3_server.stop()
        assert not s3_server.running
        with pytest.raises(EndpointConnectionError):
            s3_server.client().get_object(Bucket=s3_server.bucket, Key="kept")
        s3_server.start()
        assert client.get_object(Bucket=s3_server.bucket, Key="kept")["Body"].read() == b"still here"


@pytest.mark.parametrize(
    "command",
    [
        ["docker", "compose", "version"],
        ["promtool", "--version"],
        ["zstd", "--version"],
        ["pg_dump", "--version"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_tool_is_installed(command):
    """scripts/test installs the command-line tools the tests call."""
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
