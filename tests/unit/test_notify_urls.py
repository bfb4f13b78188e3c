"""NOTIFY_URLS: the list, the scheme label, and the settings check that names a URL's position,
never the URL."""

import pytest

from daemon.notify import channels_from_settings
from daemon.notify.apprise_channel import FALLBACK_LABEL, label
from daemon.notify_urls import ordinal, scheme_of, split_urls
from daemon.settings import load_settings
from tests.unit.test_settings import clean_environment, problems  # noqa: F401 - an autouse fixture, and its helper

SECRET_PART = "tok-3e9f1a"


def load_problems(monkeypatch, **env: str) -> list[str]:
    return problems(monkeypatch, POSTGRES_CONTAINER="pg", **env)


class TestSplitUrls:
    def test_whitespace_separates_and_commas_stay_in_a_url(self):
        """Spaces, tabs and new lines separate URLs; a comma in a query string is part of its URL."""
        text = " mailto://u:p@smtp.example.com?to=a@example.com,b@example.com\n\tntfy://ntfy.sh/topic \n"
        assert split_urls(text) == ["mailto://u:p@smtp.example.com?to=a@example.com,b@example.com",
                                    "ntfy://ntfy.sh/topic"]

    def test_blank_text_is_no_url(self):
        """A value of blanks only holds no URL."""
        assert split_urls(" \n ") == []


class TestSchemeLabel:
    @pytest.mark.parametrize(("url", "scheme"), [
        ("mailto://user:pass@example.com", "mailto"),
        ("NTFYS://ntfy.sh/topic", "ntfys"),
        ("json://host/path", "json"),
    ])
    def test_the_label_is_the_scheme_in_lower_case(self, url, scheme):
        """The metric label is the URL's scheme, lower-cased."""
        assert scheme_of(url) == scheme and label(url) == scheme

    @pytest.mark.parametrize("url", ["no scheme at all", "mailto:ops@example.com", f"{SECRET_PART} x://y"])
    def test_a_url_without_a_showable_scheme_gets_the_fallback(self, url):
        """Without a clean ``scheme://`` the label is the fallback, never a piece of the URL."""
        assert scheme_of(url) == "" and label(url) == FALLBACK_LABEL


class TestOrdinal:
    @pytest.mark.parametrize(("position", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                                    (12, "12th"), (13, "13th"), (21, "21st"), (102, "102nd")])
    def test_english_ordinals(self, position, text):
        """Positions read as English ordinals in the error message."""
        assert ordinal(position) == text


class TestNotifyUrlSettings:
    def test_an_unknown_service_is_refused_by_position_without_the_url(self, monkeypatch, capfd):
        """The 2nd URL of an unknown scheme is named by position and scheme; neither the URL nor Apprise's log shows it."""
        (line,) = load_problems(monkeypatch, NOTIFY_URLS=f"json://example.com/hook nosuchservice://{SECRET_PART}")
        assert line.startswith("NOTIFY_URLS") and "2nd URL" in line and "nosuchservice://" in line
        assert SECRET_PART not in line
        captured = capfd.readouterr()
        assert SECRET_PART not in captured.out + captured.err

    def test_an_incomplete_url_is_refused(self, monkeypatch):
        """A Telegram URL without its bot token is the 1st URL Apprise cannot use."""
        (line,) = load_problems(monkeypatch, NOTIFY_URLS="tgram://")
        assert line.startswith("NOTIFY_URLS") and "1st URL" in line

    def test_text_that_is_no_url_is_refused(self, monkeypatch):
        """A word without a scheme is reported as not a URL, and not repeated."""
        (line,) = load_problems(monkeypatch, NOTIFY_URLS=SECRET_PART)
        assert "1st URL is not a URL" in line and SECRET_PART not in line

    def test_urls_from_a_file_one_a_line_become_channels_named_by_scheme(self, monkeypatch, tmp_path):
        """NOTIFY_URLS_FILE with a URL a line gives one channel per URL, each named after its scheme."""
        urls = tmp_path / "notify_urls"
        urls.write_text(f"mailto://user:pass@smtp.example.com?to=ops@example.com\nntfy://ntfy.sh/{SECRET_PART}\n")
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("NOTIFY_URLS_FILE", str(urls))
        settings = load_settings()
        assert settings.notify_url_list == ["mailto://user:pass@smtp.example.com?to=ops@example.com",
                                            f"ntfy://ntfy.sh/{SECRET_PART}"]
        channels = channels_from_settings(settings)
        assert [channel.name for channel in channels] == ["mailto", "ntfy"]
        assert SECRET_PART not in repr(channels)
        assert settings.masked()["NOTIFY_URLS"] == "***"

    def test_value_and_file_together_is_an_error(self, monkeypatch, tmp_path):
        """NOTIFY_URLS and NOTIFY_URLS_FILE together are refused like every other secret."""
        urls = tmp_path / "notify_urls"
        urls.write_text("json://example.com/hook")
        lines = load_problems(monkeypatch, NOTIFY_URLS="json://example.com/other", NOTIFY_URLS_FILE=str(urls))
        assert any("NOTIFY_URLS and NOTIFY_URLS_FILE" in line for line in lines)
