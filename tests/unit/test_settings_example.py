import re
from pathlib import Path

from daemon.settings import SECRET_FIELDS, Settings, environment_variable_names

EXAMPLE = Path(__file__).resolve().parents[2] / "settings.env.example"


def example_variables() -> list[str]:
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", EXAMPLE.read_text(), flags=re.MULTILINE)


class TestSettingsExample:
    def test_lists_exactly_the_known_variables(self):
        """settings.env.example names every variable the settings model reads, and no other."""
        listed = example_variables()
        assert len(listed) == len(set(listed)), "a variable is listed twice"
        assert set(listed) == set(environment_variable_names())

    def test_defaults_in_the_example_are_the_model_defaults(self):
        """Where the example shows a value, it is the model's default (except the marked deployment values)."""
        deployment_values = {"POSTGRES_CONTAINER", "POSTGRES_PASSWORD"}
        text = EXAMPLE.read_text()
        for name, value in re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE):
            if not value or name in deployment_values:
                continue
            field = Settings.model_fields[name.lower()]
            default = field.get_default(call_default_factory=True)
            if isinstance(default, list):
                default = ",".join(default)
            elif isinstance(default, bool):
                default = str(default).lower()
            elif isinstance(default, float) and default.is_integer():
                default = int(default)
            assert str(default) == value, name

    def test_every_secret_has_a_file_form(self):
        """Each secret is listed with its _FILE form."""
        listed = set(example_variables())
        for name in SECRET_FIELDS:
            assert name.upper() in listed and f"{name.upper()}_FILE" in listed


class TestPerServiceExamples:
    """compose.yaml gives the database postgres.env and the s3 profile's store s3.env; the sidecar
    reads both after settings.env. They hold exactly the variables those services share."""

    @staticmethod
    def variables_of(name: str) -> dict[str, str]:
        text = (EXAMPLE.parent / name).read_text()
        return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))

    def test_postgres_env_holds_the_database_credentials_only(self):
        assert set(self.variables_of("postgres.env.example")) == {"POSTGRES_USER", "POSTGRES_PASSWORD"}

    def test_s3_env_holds_the_store_keys_and_bucket_only(self):
        assert set(self.variables_of("s3.env.example")) == {"S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

    def test_settings_env_leaves_the_shared_values_to_them(self):
        """Empty in settings.env.example: a value there would only be overridden, and mislead."""
        settings = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", EXAMPLE.read_text(), flags=re.MULTILINE))
        assert [name for name in ("POSTGRES_PASSWORD", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if settings[name]] == []
