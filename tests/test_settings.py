"""load_settings: every bad value is refused with a SettingsError that names its variable."""
from __future__ import annotations

import pytest

from gateway.settings import DEV_SECRET_KEY, SettingsError, load_settings

GOOD_SECRET = "k" * 8 + "Zq3v9X2mT7pL4rW8sN1bY6cH5jD0fG"  # 38 characters, not a placeholder
PRODUCTION = {"GATEWAY_ENV": "production", "GATEWAY_PUBLIC_URL": "https://gateway.school.example",
              "GATEWAY_SECRET_KEY": GOOD_SECRET}


def refused(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value


@pytest.mark.parametrize("env,variable", [
    ({"GATEWAY_PORT": "abc"}, "GATEWAY_PORT"),
    ({"GATEWAY_PORT": "0"}, "GATEWAY_PORT"),
    ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT"),
    ({"GATEWAY_DATABASE_URL": "mysql://u:p@db/school"}, "GATEWAY_DATABASE_URL"),
    ({"GATEWAY_DATABASE_URL": "gateway.sqlite3"}, "GATEWAY_DATABASE_URL"),
    ({"GATEWAY_DATABASE_URL": "sqlite:///no/such/folder/x.sqlite3"}, "GATEWAY_DATABASE_URL"),
    ({"TWILIO_ACCOUNT_SID": "AC123"}, "TWILIO_AUTH_TOKEN"),
    ({"TWILIO_AUTH_TOKEN": "tok"}, "TWILIO_ACCOUNT_SID"),
    ({"TWILIO_ACCOUNT_SID": "XX123", "TWILIO_AUTH_TOKEN": "tok"}, "TWILIO_ACCOUNT_SID"),
    ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_API_BASE_URL": "ftp://x"}, "TWILIO_API_BASE_URL"),
    ({"SMTP_HOST": "mail.example", "SMTP_PORT": "0"}, "SMTP_PORT"),
    ({"SMTP_PORT": "0"}, "SMTP_PORT"),  # wrong even while SMTP is not configured
    ({"SMTP_PORT": "smtp"}, "SMTP_PORT"),
    ({"SMTP_HOST": "mail.example", "SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
    ({"SMTP_HOST": "mail.example", "SMTP_USERNAME": "u"}, "SMTP_PASSWORD"),
    ({"SMTP_FROM": "not an address"}, "SMTP_FROM"),
    ({"IMAP_HOST": "imap.example"}, "IMAP_USERNAME"),
    ({"IMAP_HOST": "imap.example", "IMAP_USERNAME": "u"}, "IMAP_PASSWORD"),
    ({"IMAP_PORT": "-1"}, "IMAP_PORT"),
    ({"GATEWAY_PUBLIC_URL": "ftp://x"}, "GATEWAY_PUBLIC_URL"),
    ({"GATEWAY_PUBLIC_URL": "gateway.example.org"}, "GATEWAY_PUBLIC_URL"),
    ({"GATEWAY_PUBLIC_URL": "https://gw.example/?a=1"}, "GATEWAY_PUBLIC_URL"),
    ({"GATEWAY_ENV": "staging"}, "GATEWAY_ENV"),
    ({"GATEWAY_REPLY_DOMAIN": "reply@example.org"}, "GATEWAY_REPLY_DOMAIN"),
    ({"GATEWAY_REPLY_DOMAIN": "localhost"}, "GATEWAY_REPLY_DOMAIN"),
    ({"GATEWAY_SMS_RATE_PER_NUMBER": "-1"}, "GATEWAY_SMS_RATE_PER_NUMBER"),
    ({"GATEWAY_SMTP_RATE": "nan"}, "GATEWAY_SMTP_RATE"),
    ({"GATEWAY_MAX_ATTEMPTS": "0"}, "GATEWAY_MAX_ATTEMPTS"),
    ({"GATEWAY_LEASE_SECONDS": "1"}, "GATEWAY_LEASE_SECONDS"),
    ({"GATEWAY_WORKER_BATCH_SIZE": "many"}, "GATEWAY_WORKER_BATCH_SIZE"),
    ({"GATEWAY_MAX_REQUEST_BYTES": "10"}, "GATEWAY_MAX_REQUEST_BYTES"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_value_names_its_variable(env, variable):
    error = refused(env)
    assert error.key == variable
    assert str(error).startswith(f"{variable}: ")
    assert "\n" not in str(error)


def test_defaults_for_development_need_nothing():
    settings = load_settings({})
    assert settings.environment == "development"
    assert settings.database_url == "sqlite://gateway.sqlite3"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.secret_key == DEV_SECRET_KEY
    assert settings.reply_domain == "reply.localhost"
    assert settings.smtp_from == "school@reply.localhost"
    assert settings.uses_dev_sms and settings.uses_dev_email
    assert settings.imap is None
    assert settings.max_request_bytes == 1024 * 1024
    assert not settings.is_production


def test_test_environment_needs_no_secret():
    assert load_settings({"GATEWAY_ENV": "test"}).secret_key == DEV_SECRET_KEY


def test_values_are_read_and_normalised(tmp_path):
    settings = load_settings({
        "GATEWAY_ENV": " Development ", "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/gw.sqlite3",
        "GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "9090", "GATEWAY_PUBLIC_URL": "https://gw.example.org/",
        "GATEWAY_REPLY_DOMAIN": "Reply.Example.org", "TWILIO_ACCOUNT_SID": "AC0123", "TWILIO_AUTH_TOKEN": "tok",
        "TWILIO_API_BASE_URL": "http://127.0.0.1:9999", "SMTP_HOST": "mail.example.org", "SMTP_PORT": "587",
        "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p", "SMTP_STARTTLS": "yes", "IMAP_HOST": "imap.example.org",
        "IMAP_USERNAME": "u", "IMAP_PASSWORD": "p", "GATEWAY_SMS_RATE_PER_NUMBER": "0", "GATEWAY_MAX_REQUEST_BYTES": "2048",
    })
    assert settings.database_url == f"sqlite:///{tmp_path}/gw.sqlite3"
    assert (settings.host, settings.port) == ("0.0.0.0", 9090)
    assert settings.public_url == "https://gw.example.org"
    assert settings.reply_domain == "reply.example.org"
    assert settings.smtp_from == "school@reply.example.org"
    assert settings.twilio is not None and settings.twilio.api_base_url == "http://127.0.0.1:9999"
    assert settings.smtp is not None and (settings.smtp.port, settings.smtp.starttls) == (587, True)
    assert settings.imap is not None and settings.imap.port == 993
    assert settings.sms_rate_per_number == 0
    assert settings.max_request_bytes == 2048
    assert not settings.uses_dev_sms and not settings.uses_dev_email


@pytest.mark.parametrize("url", ["postgres://u:p@db:5432/gw", "postgresql://db/gw", "asyncpg://db/gw",
                                 "sqlite://:memory:", "sqlite://relative.sqlite3"])
def test_database_urls_accepted(url):
    assert load_settings({"GATEWAY_DATABASE_URL": url}).database_url == url


def test_production_with_real_values_starts():
    settings = load_settings(PRODUCTION)
    assert settings.is_production and settings.secret_key == GOOD_SECRET


@pytest.mark.parametrize("secret", [None, "", "   ", "changeme", "CHANGEME", "secret", DEV_SECRET_KEY, "short-but-random-9f3"])
def test_production_refuses_a_missing_or_placeholder_secret(secret):
    env = dict(PRODUCTION)
    if secret is None:
        del env["GATEWAY_SECRET_KEY"]
    else:
        env["GATEWAY_SECRET_KEY"] = secret
    error = refused(env)
    assert error.key == "GATEWAY_SECRET_KEY"


def test_production_needs_a_public_url():
    env = dict(PRODUCTION)
    del env["GATEWAY_PUBLIC_URL"]
    assert refused(env).key == "GATEWAY_PUBLIC_URL"


def test_production_refuses_a_placeholder_inbound_email_secret():
    assert refused({**PRODUCTION, "GATEWAY_INBOUND_EMAIL_SECRET": "changeme"}).key == "GATEWAY_INBOUND_EMAIL_SECRET"
    assert load_settings(PRODUCTION).inbound_email_secret is None
    assert load_settings({**PRODUCTION, "GATEWAY_INBOUND_EMAIL_SECRET": GOOD_SECRET}).inbound_email_secret == GOOD_SECRET


def test_development_accepts_any_secret():
    assert load_settings({"GATEWAY_SECRET_KEY": "changeme"}).secret_key == "changeme"


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "abc")
    with pytest.raises(SettingsError, match="^GATEWAY_PORT: "):
        load_settings()


def test_overrides_win():
    assert load_settings({"GATEWAY_PORT": "9000"}, port=1234).port == 1234
