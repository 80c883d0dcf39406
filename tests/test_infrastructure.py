"""The CloudFormation template: cfn-lint clean, and the security rules it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from lakehouse.settings import GOLD_TABLES

TEMPLATE = PROJECT_ROOT / "deploy" / "infrastructure.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    parsed, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return parsed


def resources(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_clean():
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(Path(TEMPLATE), ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(template: dict):
    for name, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield f"{name}/{policy['PolicyName']}/{statement.get('Sid')}", statement


def test_no_wildcard_action_on_wildcard_resource(template):
    for where, statement in _statements(template):
        actions = _as_list(statement.get("Action", []))
        resources_ = _as_list(statement.get("Resource", []))
        broad_action = any(a == "*" or str(a).endswith(":*") for a in actions)
        assert not (broad_action and "*" in resources_), where
        if "*" in resources_:
            assert len(actions) == 1 or "Condition" in statement, (
                f"{where}: several actions on every resource"
            )


def test_roles_use_no_managed_policies(template):
    for name, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name


@pytest.mark.parametrize("bucket", ["DataBucket", "MwaaBucket"])
def test_bucket_hardened(template, bucket):
    properties = template["Resources"][bucket]["Properties"]
    assert properties["VersioningConfiguration"]["Status"] == "Enabled"
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert {t["Key"] for t in properties["Tags"]} == {"Project", "Environment", "Owner"}


@pytest.mark.parametrize("bucket", ["DataBucket", "MwaaBucket"])
def test_bucket_tls_only(template, bucket):
    policies = [
        p
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (policy,) = policies
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_athena_workgroup_enforced(template):
    (workgroup,) = resources(template, "AWS::Athena::WorkGroup").values()
    configuration = workgroup["Properties"]["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    assert "athena-results/" in str(configuration["ResultConfiguration"]["OutputLocation"])


def test_quicksight_dataset_per_gold_table(template):
    datasets = resources(template, "AWS::QuickSight::DataSet").values()
    names = sorted(d["Properties"]["Name"] for d in datasets)
    assert names == sorted(GOLD_TABLES)
    for dataset in datasets:
        assert dataset["Properties"]["ImportMode"] == "SPICE"


def test_dataset_columns_match_gold_sql(template):
    """Every column a dataset binds to is an output of its SQL file."""
    import sqlglot

    for dataset in resources(template, "AWS::QuickSight::DataSet").values():
        table = dataset["Properties"]["Name"]
        relational = dataset["Properties"]["PhysicalTableMap"]["gold"]["RelationalTable"]
        columns = [c["Name"] for c in relational["InputColumns"]]
        sql = (PROJECT_ROOT / "include" / "sql" / f"{table}.sql").read_text()
        sql = sql.replace("{{ ", "").replace(" }}", "")
        outputs = [e.alias_or_name for e in sqlglot.parse_one(sql, read="athena").expression.selects]
        assert columns == outputs, table


def test_glue_role_cannot_touch_gold(template):
    glue = template["Resources"]["GlueRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writable = [r for s in glue if "s3:PutObject" in _as_list(s["Action"]) for r in _as_list(s["Resource"])]
    assert not [r for r in writable if "gold" in str(r) or "landing" in str(r)]
