"""The common case of botocore's credential chain and endpoint rules, read
without botocore: static keys from the environment or the shared files, a
custom endpoint (an S3-compatible store), its region.

A worker signs S3 GETs itself (``sources.sigv4``); importing boto3, making
a session and a client only to learn a key pair and an endpoint costs a
fresh worker 0.7-1.3 s here, most of a small job's fixed cost. ``resolve``
answers what botocore would answer, or None whenever the configuration uses
anything it does not read (roles, SSO, ``credential_process``, web
identity, instance or container credentials, FIPS/dual-stack, an ``s3``
or ``services`` section, an unknown profile key): then ``sources.s3``
asks botocore, as before. Nothing here writes or logs a key; the keys stay
in the worker's memory, read from where botocore itself reads them.

botocore's order, kept: environment keys win (both, or botocore's own
error); then the config profile's role/SSO/process settings (not read
here: None); then the shared credentials file's profile; then the config
file's. The profile is ``AWS_DEFAULT_PROFILE``, else ``AWS_PROFILE``, else
``default``. The region: ``AWS_DEFAULT_REGION``, else the profile's
``region``. The endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``,
else the profile's ``endpoint_url``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from dlengine.records import frozen

if TYPE_CHECKING:
    import configparser

__all__ = ["Resolved", "resolve"]

# profile keys that change nothing of a presigned GET's credential, region or URL
_HARMLESS_KEYS = frozenset(
    {
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token", "region",
        "endpoint_url", "output", "retry_mode", "max_attempts", "ca_bundle", "parameter_validation",
        "tcp_keepalive", "defaults_mode", "request_checksum_calculation", "response_checksum_validation",
        "metadata_service_timeout", "metadata_service_num_attempts", "cli_pager", "cli_timestamp_format",
        "cli_follow_urlparam", "cli_history", "cli_binary_format", "cli_auto_prompt", "duration_seconds",
    }
)  # fmt: skip
# environment variables with which botocore's answer may differ from the one here
_DEFER_VARIABLES = (
    "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "AWS_SIGV4A_SIGNING_REGION_SET", "AWS_DATA_PATH",
)  # fmt: skip
_CREDENTIAL_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                         "AWS_CONTAINER_CREDENTIALS_FULL_URI")  # fmt: skip


@frozen(repr=False)
class Resolved:
    """What a presigned GET needs: keys (access, secret, session token),
    the region to sign for, the custom endpoint (None: AWS itself). The
    repr names no key: this object must never be shown."""

    credentials: tuple[str, str, str | None]
    region: str | None
    endpoint: str | None

    def __repr__(self) -> str:
        return f"Resolved(region={self.region!r}, endpoint={self.endpoint!r})"


def resolve(environ: Mapping[str, str] | None = None) -> Resolved | None:
    """botocore's credentials, region and endpoint when they are static
    keys and plain settings; None when only botocore can tell."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _DEFER_VARIABLES):
        return None
    profile_name = env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or "default"
    config = _section(env.get("AWS_CONFIG_FILE") or "~/.aws/config", _config_section(profile_name))
    shared = _section(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", profile_name)
    if config is None or shared is None or not _harmless(config) or not _harmless(shared):
        return None  # unreadable files, nested sections, roles, SSO, processes: botocore's
    if profile_name != "default" and not config and not shared:
        return None  # a profile named but nowhere: botocore's ProfileNotFound
    credentials = _credentials(env, config, shared)
    if credentials is None:
        return None
    region = env.get("AWS_DEFAULT_REGION") or config.get("region") or None
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or config.get("endpoint_url") or None
    return Resolved(credentials, region, endpoint)


def _credentials(
    env: Mapping[str, str], config: Mapping[str, str], shared: Mapping[str, str]
) -> tuple[str, str, str | None] | None:
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if access or secret:  # botocore's env provider is first; one without the other is its error to raise
        token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None
        return (access, secret, token) if access and secret else None
    if any(env.get(name) for name in _CREDENTIAL_VARIABLES):
        return None  # web identity or container credentials come before the files' keys
    for section in (shared, config):
        access, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        if access or secret:
            token = section.get("aws_session_token") or section.get("aws_security_token") or None
            return (access, secret, token) if access and secret else None
    return None  # instance metadata and the like: botocore's


def _config_section(profile: str) -> str:
    return "default" if profile == "default" else f"profile {profile}"


def _read(path: str) -> configparser.RawConfigParser | Literal[False] | None:
    """The file as botocore parses it; None if it is missing (configparser
    is then not even imported: a few ms of every small job's start); False
    if it cannot be read or parsed (``_section`` then hands over to
    botocore, which says why)."""
    try:
        file = open(os.path.expanduser(path), encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    except OSError:
        return False
    import configparser

    parser = configparser.RawConfigParser()
    try:
        with file:
            parser.read_file(file)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return False
    return parser


def _section(path: str, name: str) -> dict[str, str] | None:
    """The keys of the file's section; {} when the file or the section is
    absent; None when the file cannot be read or a value is nested
    (``s3 =`` followed by indented lines: botocore's sub-sections)."""
    parser = _read(path)
    if parser is None:
        return {}
    if parser is False:
        return None
    if not parser.has_section(name):
        if name == "default" and parser.has_section("profile default"):
            name = "profile default"
        else:
            return {}
    values = {key.lower(): value.strip() for key, value in parser.items(name)}
    return None if any("\n" in value for value in values.values()) else values


def _harmless(section: Mapping[str, str]) -> bool:
    return all(key in _HARMLESS_KEYS for key in section)
