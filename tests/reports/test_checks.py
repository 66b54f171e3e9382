"""``manage.py check --deploy`` on the production settings: where export files would go (apm.W050)."""

from __future__ import annotations

import pytest

from tests.processes import production_check_deploy


def check_deploy(**env: str) -> tuple[int, str]:
    """Run the production deploy check as an operator would, with ``env``; its exit status and output."""
    done = production_check_deploy(**{"AWS_STORAGE_BUCKET_NAME": "", "AWS_S3_ENDPOINT_URL": "", **env})
    return done.returncode, done.stdout + done.stderr


def test_production_without_a_bucket_warns_that_exports_stay_on_local_disk() -> None:
    status, output = check_deploy()

    assert status == 1
    assert "(apm.W050) Export files would be written to the local MEDIA_ROOT" in output
    assert "Set AWS_STORAGE_BUCKET_NAME" in output


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_STORAGE_BUCKET_NAME": "apm-exports", "AWS_S3_ENDPOINT_URL": "https://objects.example.com"},
        {"DJANGO_MEDIA_ROOT": "/srv/apm/shared-media"},  # a volume every pod mounts, chosen on purpose
    ],
    ids=["bucket", "media-root-set"],
)
def test_a_bucket_or_a_chosen_media_root_passes(env: dict[str, str]) -> None:
    status, output = check_deploy(**env)

    assert (status, output.strip()) == (0, "System check identified no issues (0 silenced).")


def test_the_download_mode_is_checked_at_start() -> None:
    status, output = check_deploy(AWS_STORAGE_BUCKET_NAME="apm-exports", APM_EXPORT_DOWNLOADS="proxy")

    assert status != 0
    assert "APM_EXPORT_DOWNLOADS is redirect or stream, not 'proxy'." in output
