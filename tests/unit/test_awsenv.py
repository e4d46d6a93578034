"""``sources.awsenv`` answers what botocore answers (credentials, region,
endpoint, the presigned URL) for static keys and a custom endpoint, and
None for every configuration it does not read: a worker then asks
botocore, as before (issue 17: workers sign without importing boto3)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from dlengine.sources import awsenv, s3

_AWS = ("AWS_", "BOTO_")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AWS variable of the machine's; the shared files in ``tmp_path``."""
    import os

    for name in list(os.environ):
        if name.startswith(_AWS):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # botocore must not look for an instance role
    monkeypatch.setattr(s3, "_head_region", lambda url: None)  # no request to the made-up stores
    return monkeypatch


def _botocore() -> tuple[tuple[str, str, str | None] | None, str | None]:
    import botocore.session

    session = botocore.session.Session()
    found = session.get_credentials()
    frozen = found.get_frozen_credentials() if found is not None else None
    keys = (frozen.access_key, frozen.secret_key, frozen.token) if frozen else None
    return keys, session.get_config_variable("region")


def _write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n")


STATIC = [
    ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, "", ""),
    (
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "TOK",
         "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": "https://store.example/base/"},
        "", "",
    ),
    (
        {"AWS_PROFILE": "team"},
        "[profile team]\nregion = ap-south-1\nendpoint_url = http://localhost:9000\n",
        "[team]\naws_access_key_id = FILEAK\naws_secret_access_key = FILESK\n",
    ),
    ({}, "[default]\naws_access_key_id = CFGAK\naws_secret_access_key = CFGSK\nregion = us-west-2\n", ""),
    (
        {"AWS_ACCESS_KEY_ID": "ENVAK", "AWS_SECRET_ACCESS_KEY": "ENVSK", "AWS_PROFILE": "team"},
        "[profile team]\nregion = eu-north-1\n",
        "[team]\naws_access_key_id = FILEAK\naws_secret_access_key = FILESK\n",
    ),
]  # fmt: skip


def _configure(
    env: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], config: str, credentials: str
) -> None:
    """The environment variables, and the config and credentials files (the fixture points AWS at them)."""
    for name, value in variables.items():
        env.setenv(name, value)
    _write(tmp_path / "config", config)
    _write(tmp_path / "credentials", credentials)


@pytest.mark.parametrize(("variables", "config", "credentials"), STATIC)
def test_static_configurations_read_as_botocore_reads_them(
    env: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], config: str, credentials: str
) -> None:
    _configure(env, tmp_path, variables, config, credentials)
    got = awsenv.resolve()
    assert got is not None
    keys, region = _botocore()
    assert (got.credentials, got.region) == (keys, region)
    assert got.credentials[1] not in repr(got)  # never shown


DEFERRED = [
    ({"AWS_ACCESS_KEY_ID": "AK"}, "", ""),  # partial: botocore's error
    ({"AWS_PROFILE": "nowhere", "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}, "", ""),
    ({"AWS_USE_FIPS_ENDPOINT": "true", "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}, "", ""),
    ({"AWS_WEB_IDENTITY_TOKEN_FILE": "/x", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, "", ""),
    ({}, "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n", "[base]\naws_access_key_id = A\n"),
    ({}, "[default]\ncredential_process = /bin/echo\n", ""),
    ({}, "[default]\nsso_session = s\nsso_account_id = 1\n", ""),
    ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}, "[default]\ns3 =\n  addressing_style = virtual\n", ""),
    ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}, "[default\nbroken", ""),
    ({}, "", ""),  # nothing: instance metadata, botocore's
]  # fmt: skip


@pytest.mark.parametrize(("variables", "config", "credentials"), DEFERRED)
def test_what_it_does_not_read_is_left_to_botocore(
    env: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], config: str, credentials: str
) -> None:
    _configure(env, tmp_path, variables, config, credentials)
    assert awsenv.resolve() is None


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:9000", "http://localhost:9000/", "https://store.example", "https://s.example/base/"]
)
@pytest.mark.parametrize("bucket", ["bkt", "my.bucket", "Bad_Bucket"])
def test_presigned_url_is_botocores_for_a_custom_endpoint(env: pytest.MonkeyPatch, endpoint: str, bucket: str) -> None:
    """Origin, path (path-style addressing) and signed query as botocore's
    own presigned URL of the same object."""
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK/x+", "AWS_ENDPOINT_URL": endpoint,
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():  # fmt: skip
        env.setenv(name, value)
    presigner = s3._static_presigner(bucket)
    assert presigner is not None
    ours = urlsplit(presigner.url("dir/a b+c.bin") or "")
    sdk = boto3.session.Session().client("s3")
    theirs = urlsplit(sdk.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c.bin"}))
    assert (ours.scheme, ours.netloc, ours.path) == (theirs.scheme, theirs.netloc, theirs.path)
    scope = dict(parse_qsl(ours.query))["X-Amz-Credential"].split("/")
    assert (scope[0], scope[2:]) == ("AK", [sdk.meta.region_name, "s3", "aws4_request"])


def test_aws_itself_is_left_to_botocore(env: pytest.MonkeyPatch) -> None:
    """No custom endpoint: the bucket's region takes a HEAD (botocore's path)."""
    env.setenv("AWS_ACCESS_KEY_ID", "AK")
    env.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    assert awsenv.resolve() is not None and s3._static_presigner("bkt") is None
