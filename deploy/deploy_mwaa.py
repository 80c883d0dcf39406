"""Build the MWAA artifacts of this package and upload them to an environment's bucket.

    python deploy/deploy_mwaa.py --bucket my-mwaa-bucket --set LAKEHOUSE_BUCKET=my-data-bucket \\
        --set LAKEHOUSE_GLUE_ROLE=ecommerce-glue --environment my-env --dry-run

Amazon MWAA copies ``dags/`` of its bucket to every worker and unpacks ``plugins.zip`` into the
plugins folder. Apart from requirements.txt and startup.sh, nothing else reaches the workers. So the build puts the DAG files, an
``.airflowignore``, the SQL files and the Glue script under ``dags/``, zips the contents of
``plugins/`` (not the folder itself), and writes ``startup.sh``, which exports the ``LAKEHOUSE_*``
settings before Airflow starts. With ``--environment`` the environment is updated to the new
object versions of ``plugins.zip``, ``requirements.txt`` and ``startup.sh`` (the bucket must be
versioned, as MWAA requires). ``--dry-run`` builds and prints the plan, and calls no AWS API.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VERSION = "3.3.1"
MWAA_PYTHON = "3.12"
CONSTRAINT_URL = (
    f"https://raw.githubusercontent.com/apache/airflow/constraints-{AIRFLOW_VERSION}/"
    f"constraints-{MWAA_PYTHON}.txt"
)
AIRFLOWIGNORE = "include/\nglue_scripts/\n"
# Settings only; a secret belongs in an Airflow connection, never in startup.sh.
ALLOWED_SETTINGS = re.compile(r"^LAKEHOUSE_[A-Z0-9_]+$")
SECRET_NAMES = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)")
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:=@+,-]{0,512}$")
_SKIPPED = ("__pycache__", ".pyc", ".DS_Store")


class DeployError(ValueError):
    """An invalid deployment request: a bad setting, or a missing file."""


@dataclass(frozen=True)
class Artifact:
    """One object to upload: its key in the MWAA bucket and its bytes."""

    key: str
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and not any(s in str(p) for s in _SKIPPED))


def build_plugins_zip(plugins_dir: Path) -> bytes:
    """Zip the contents of ``plugins/`` so ``lakehouse/`` sits at the top of the archive.

    Entries get a fixed timestamp, so an unchanged package gives the same bytes and MWAA finds
    no new version.
    """
    from io import BytesIO

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _files(plugins_dir, "**/*"):
            info = zipfile.ZipInfo(str(path.relative_to(plugins_dir)), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def check_requirements(text: str) -> None:
    """Fail unless requirements.txt pins Airflow's constraints of the MWAA version."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    constraint = [line for line in lines if line.startswith(("--constraint", "-c "))]
    if len(constraint) != 1 or CONSTRAINT_URL not in constraint[0]:
        raise DeployError(f'requirements.txt must have exactly one line: --constraint "{CONSTRAINT_URL}"')


def startup_script(settings: dict[str, str]) -> bytes:
    """Return ``startup.sh``: exports of the validated ``LAKEHOUSE_*`` settings, nothing else."""
    lines = [
        "#!/bin/sh",
        "# Written by deploy/deploy_mwaa.py: the lakehouse settings of this MWAA environment.",
        "export LAKEHOUSE_TARGET=aws",
    ]
    for name, value in sorted(settings.items()):
        if not ALLOWED_SETTINGS.match(name):
            raise DeployError(f"invalid setting {name!r}: expected a LAKEHOUSE_* name")
        if SECRET_NAMES.search(name):
            raise DeployError(f"invalid setting {name!r}: put secrets in an Airflow connection")
        if not SAFE_VALUE.match(value):
            raise DeployError(
                f"invalid value for {name}: {value!r} has characters outside [A-Za-z0-9_./:=@+,-]"
            )
        if name != "LAKEHOUSE_TARGET":
            lines.append(f"export {name}={shlex.quote(value)}")
    return ("\n".join(lines) + "\n").encode()


def build(settings: dict[str, str], root: Path = PROJECT_ROOT) -> list[Artifact]:
    """Build every object the MWAA bucket needs, keyed as MWAA expects them."""
    requirements = (root / "requirements.txt").read_text()
    check_requirements(requirements)
    artifacts = [
        Artifact("requirements.txt", requirements.encode()),
        Artifact("plugins.zip", build_plugins_zip(root / "plugins")),
        Artifact("startup.sh", startup_script(settings)),
        Artifact("dags/.airflowignore", AIRFLOWIGNORE.encode()),
    ]
    for path in _files(root / "dags", "*.py"):
        artifacts.append(Artifact(f"dags/{path.name}", path.read_bytes()))
    for path in _files(root / "include" / "sql", "*.sql"):
        artifacts.append(Artifact(f"dags/include/sql/{path.name}", path.read_bytes()))
    for path in _files(root / "glue_scripts", "*.py"):
        artifacts.append(Artifact(f"dags/glue_scripts/{path.name}", path.read_bytes()))
    if not any(a.key.startswith("dags/ecommerce_") for a in artifacts):
        raise DeployError(f"no DAG files found under {root / 'dags'}")
    return artifacts


def deploy(
    artifacts: list[Artifact],
    bucket: str,
    *,
    environment: str | None = None,
    dry_run: bool = False,
    s3=None,
    mwaa=None,
    out=None,
) -> dict[str, str]:
    """Upload the artifacts and, given an environment, point it at the new versions.

    :return: the version id of each uploaded key (empty in a dry run, or if unversioned).
    """
    out = out or sys.stdout
    versions: dict[str, str] = {}
    for artifact in artifacts:
        print(
            f"{'would upload' if dry_run else 'upload'} s3://{bucket}/{artifact.key} "
            f"({len(artifact.body)} bytes, sha256 {artifact.sha256[:12]})",
            file=out,
        )
        if not dry_run:
            response = s3.put_object(Bucket=bucket, Key=artifact.key, Body=artifact.body)
            versions[artifact.key] = response.get("VersionId", "")
    if environment:
        update = {
            "Name": environment,
            "PluginsS3Path": "plugins.zip",
            "RequirementsS3Path": "requirements.txt",
            "StartupScriptS3Path": "startup.sh",
        }
        if not dry_run:
            missing = [k for k in ("plugins.zip", "requirements.txt", "startup.sh") if not versions.get(k)]
            if missing:
                raise DeployError(
                    f"bucket {bucket} returned no version for {missing}: MWAA needs a versioned bucket"
                )
            update |= {
                "PluginsS3ObjectVersion": versions["plugins.zip"],
                "RequirementsS3ObjectVersion": versions["requirements.txt"],
                "StartupScriptS3ObjectVersion": versions["startup.sh"],
            }
        print(f"{'would update' if dry_run else 'update'} MWAA environment {environment}: {update}", file=out)
        if not dry_run:
            mwaa.update_environment(**update)
    return versions


def _parse_settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise DeployError(f"invalid --set {pair!r}: expected NAME=VALUE")
        settings[name.strip()] = value.strip()
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the MWAA environment's S3 bucket")
    parser.add_argument("--environment", help="MWAA environment to update to the new versions")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a LAKEHOUSE_* setting"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call no AWS API")
    parser.add_argument("--out-dir", help="also write the built artifacts to this folder")
    args = parser.parse_args(argv)
    try:
        artifacts = build(_parse_settings(args.set))
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out_dir:
        for artifact in artifacts:
            path = Path(args.out_dir) / artifact.key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(artifact.body)
    s3 = mwaa = None
    if not args.dry_run:
        import boto3

        s3, mwaa = boto3.client("s3"), boto3.client("mwaa")
    try:
        deploy(artifacts, args.bucket, environment=args.environment, dry_run=args.dry_run, s3=s3, mwaa=mwaa)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
