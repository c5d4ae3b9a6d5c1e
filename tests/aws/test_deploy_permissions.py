"""A first deploy that works: every IAM action CloudFormation's resource handlers call for the stacks the
GitHub deploy role deploys (template.yaml after the SAM transform, deploy/api-express.yaml) is granted
by deploy/github-deploy-role.yaml.

CloudFormation's handlers act with the caller's credentials, so a missing action fails the deploy
half-way, often only at the first update or the first delete. The actions come from the resource
schemas cfn-lint bundles (each ``handlers.create/update/delete/read.permissions``): read is required in
full (the handler reads every setting after each change, set or not); create, update and delete too,
except the actions of features no resource here uses, listed in ``FEATURE_ONLY`` with the property
that would need them (and checked to be unset). ``list`` is left out: CloudFormation lists only to
import resources or detect drift, which these deploys do not. Actions IAM does not
know (a schema's typo or an old name) are skipped, by cfn-lint's own list of IAM actions.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_ROLE = ROOT / "deploy" / "github-deploy-role.yaml"
REGION = "us-east-1"

# type -> property -> the create/update/delete actions only that property makes the handler call.
FEATURE_ONLY: dict[str, dict[str, tuple[str, ...]]] = {
    "AWS::S3::Bucket": {
        "MetadataTableConfiguration": (
            "s3:CreateBucketMetadataTableConfiguration",
            "s3:DeleteBucketMetadataTableConfiguration",
            "s3tables:*",
        ),
        "MetadataConfiguration": ("s3:UpdateBucketMetadata*TableConfiguration",),
        "AccelerateConfiguration": ("s3:PutAccelerateConfiguration",),
        "AnalyticsConfigurations": ("s3:PutAnalyticsConfiguration", "s3:DeleteBucketAnalyticsConfiguration"),
        "AbacStatus": ("s3:PutBucketAbac",),
        "AccessControl": ("s3:PutBucketAcl", "s3:PutObjectAcl"),
        "LoggingConfiguration": ("s3:PutBucketLogging",),
        # S3 checks a new notification target by writing (and deleting) a test object
        "NotificationConfiguration": ("s3:PutBucketNotification", "s3:DeleteObject"),
        "ObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration", "s3:PutObjectLockConfiguration"),
        "ReplicationConfiguration": (
            "s3:PutBucketReplication",
            "s3:PutReplicationConfiguration",
            "s3:DeleteBucketReplication",
        ),
        "WebsiteConfiguration": ("s3:PutBucketWebsite", "s3:DeleteBucketWebsite"),
        "IntelligentTieringConfigurations": ("s3:PutIntelligentTieringConfiguration",),
        "InventoryConfigurations": ("s3:PutInventoryConfiguration",),
        "MetricsConfigurations": ("s3:PutMetricsConfiguration", "s3:DeleteBucketMetricsConfiguration"),
    },
    "AWS::Lambda::Function": {
        "KmsKeyArn": ("kms:*",),
        "FileSystemConfigs": ("elasticfilesystem:*", "s3files:*"),
        "CodeSigningConfigArn": (
            "lambda:GetCodeSigningConfig",
            "lambda:PutFunctionCodeSigningConfig",
            "lambda:DeleteFunctionCodeSigningConfig",
        ),
        "CapacityProviderConfig": ("lambda:PassCapacityProvider", "lambda:AssociateRuntimeAlias"),
        "FunctionScalingConfig": ("lambda:PutFunctionScalingConfig",),
        "RecursiveLoop": ("lambda:PutFunctionRecursionConfig",),
        "RuntimeManagementConfig": ("lambda:PutRuntimeManagementConfig",),
    },
    "AWS::Lambda::EventSourceMapping": {"KmsKeyArn": ("kms:*",)},
    "AWS::ECR::Repository": {
        "RepositoryPolicyText": ("ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"),
        "EncryptionConfiguration.KmsKey": ("kms:*",),  # AES256 here
    },
    "AWS::IAM::Role": {
        "PermissionsBoundary": ("iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary"),
    },
    "AWS::Logs::LogGroup": {
        "KmsKeyId": ("logs:AssociateKmsKey", "logs:DisassociateKmsKey"),
        "DataProtectionPolicy": ("logs:PutDataProtectionPolicy",),
        "FieldIndexPolicies": ("logs:PutIndexPolicy", "logs:DeleteIndexPolicy"),
        "ResourcePolicyDocument": ("logs:PutResourcePolicy", "logs:DeleteResourcePolicy"),
        "DeletionProtectionEnabled": ("logs:PutLogGroupDeletionProtection",),
        "BearerTokenAuthenticationEnabled": (
            "logs:PutBearerTokenAuthentication",
            "logs:CreateLogDelivery",
            "firehose:TagDeliveryStream",
        ),
    },
    "AWS::SNS::Topic": {"DataProtectionPolicy": ("sns:PutDataProtectionPolicy",)},
}

# type -> the services whose actions its handler calls for the resources this project points it at. A
# web ACL association's handler lists the actions of every kind of resource WAF protects (API Gateway,
# AppSync, Cognito, App Runner, Verified Access, Amplify, ...) and calls those of its ResourceArn's
# service only: here a load balancer (checked below), so only WAF's and Elastic Load Balancing's.
TARGET_ONLY: dict[str, tuple[str, ...]] = {"AWS::WAFv2::WebACLAssociation": ("wafv2", "elasticloadbalancing")}


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _cfnlint_data() -> Path:
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or spec.origin is None:  # pragma: no cover - cfn-lint is pinned in the dev extras
        pytest.skip("cfn-lint is not installed")
    return Path(spec.origin).parent / "data"


@cache
def schema(type_: str) -> dict[str, Any]:
    data = _cfnlint_data() / "schemas"
    digest = json.loads((data / "providers" / f"{REGION}.json").read_text())[type_]
    found: dict[str, Any] = json.loads((data / "resources" / f"{digest}.json").read_text())
    return found


@cache
def iam_actions() -> dict[str, set[str]]:
    """service prefix -> its IAM actions (lower case), as cfn-lint checks policies (W3037)."""
    services = json.loads((_cfnlint_data() / "AdditionalSpecs" / "Policies.json").read_text())
    return {prefix: set(service["Actions"]) for prefix, service in services.items()}


def is_iam_action(action: str) -> bool:
    prefix, _, name = action.partition(":")
    return name.lower() in iam_actions().get(prefix.lower(), set())


def deployed_resources() -> list[dict[str, Any]]:
    """The resources of the stacks the deploy role deploys, as CloudFormation receives them."""
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    for res in sam["Resources"].values():  # what `sam package` puts there
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://artifacts/code.zip"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            res["Properties"]["ContentUri"] = "s3://artifacts/layer.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        cfn = transform(copy.deepcopy(sam), {}, _NoManagedPolicies())
    express = yaml_parse((ROOT / "deploy" / "api-express.yaml").read_text())
    return [*cfn["Resources"].values(), *express["Resources"].values()]


def deploy_role_statements(role_stack: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    stack = role_stack or yaml_parse(DEPLOY_ROLE.read_text())
    role = stack["Resources"]["DeployRole"]["Properties"]
    found = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert all(s["Effect"] == "Allow" for s in found)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict[str, Any]], action: str) -> bool:
    return any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower()) for s in statements for pattern in as_list(s["Action"])
    )


def feature_only(type_: str, action: str) -> bool:
    return any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower())
        for patterns in FEATURE_ONLY.get(type_, {}).values()
        for pattern in patterns
    )


def required_actions(types: set[str]) -> dict[str, set[str]]:
    """action -> the resource types whose handlers need it."""
    needs: dict[str, set[str]] = {}
    for type_ in sorted(types):
        handlers = schema(type_).get("handlers", {})
        for handler in ("create", "update", "delete", "read"):
            for action in handlers.get(handler, {}).get("permissions", []):
                if not is_iam_action(action):
                    continue
                if handler != "read" and feature_only(type_, action):
                    continue
                if type_ in TARGET_ONLY and action.partition(":")[0].lower() not in TARGET_ONLY[type_]:
                    continue
                needs.setdefault(action, set()).add(type_)
    return needs


def missing(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    types = {res["Type"] for res in deployed_resources()}
    needs = required_actions(types)
    return {action: sorted(needs[action]) for action in sorted(needs) if not granted(statements, action)}


def test_the_templates_use_types_with_handler_permissions():
    types = {res["Type"] for res in deployed_resources()}
    assert {
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::CloudWatch::Dashboard",
        "AWS::ECS::ExpressGatewayService",
        "AWS::ECR::Repository",
    } <= types
    for type_ in types:
        assert not type_.startswith("AWS::Serverless::"), "translated first"
        assert schema(type_)["handlers"]["create"]["permissions"], type_


def test_the_deploy_role_grants_every_action_the_resource_handlers_call():
    problems = missing(deploy_role_statements())
    assert not problems, f"grant these in deploy/github-deploy-role.yaml (action: resource types): {problems}"


def test_feature_only_actions_are_for_properties_no_resource_sets():
    """An exemption holds only while nothing sets its property (then its actions are needed)."""
    resources = deployed_resources()
    for type_, properties in FEATURE_ONLY.items():
        listed = {
            a
            for handler in ("create", "update", "delete")
            for a in schema(type_).get("handlers", {}).get(handler, {}).get("permissions", [])
        }
        for prop, patterns in properties.items():
            name, _, sub = prop.partition(".")
            assert name in schema(type_)["properties"], (type_, prop)
            for res in resources:
                if res["Type"] == type_:
                    value = res.get("Properties", {}).get(name)
                    assert value is None or (sub and sub not in value), f"{type_} sets {prop}: grant {patterns}"
            for pattern in patterns:
                assert any(fnmatch.fnmatchcase(a.lower(), pattern.lower()) for a in listed), (type_, pattern)


def test_the_check_catches_a_missing_action():
    """Today's gaps, as the issue found them: drop one and the check names it."""
    statements = deploy_role_statements()
    for action in ("ecs:ListServiceDeployments", "iam:ListRolePolicies", "cloudwatch:ListTagsForResource"):
        pruned = [{**s, "Action": [a for a in as_list(s["Action"]) if a != action]} for s in statements]
        assert action in missing(pruned), action


def test_wildcards_are_honoured():
    assert granted([{"Action": "s3:Get*"}], "s3:GetBucketAcl")
    assert granted([{"Action": ["sqs:*"]}], "SQS:CreateQueue")
    assert not granted([{"Action": "s3:Get*"}], "s3:PutBucketAcl")


def test_event_source_mapping_changes_are_scoped_to_the_stacks_functions():
    """CreateEventSourceMapping names no resource, but IAM can condition it on the function."""
    statements = deploy_role_statements()
    changes = {"lambda:CreateEventSourceMapping", "lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping"}
    granting = [s for s in statements if changes & set(as_list(s["Action"]))]
    assert len(granting) == 1
    (statement,) = granting
    assert set(as_list(statement["Action"])) == changes
    assert statement["Condition"] == {
        "ArnLike": {
            "lambda:FunctionArn": {
                "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${StackPrefix}-*"
            }
        }
    }


def _arns(statement: dict[str, Any]) -> list[str]:
    """The statement's resources with the role stack's parameters at their defaults."""
    values = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": "123456789012",
        "StackPrefix": "video-converter",
    }
    found = []
    for resource in as_list(statement["Resource"]):
        text = resource["Fn::Sub"] if isinstance(resource, dict) else resource
        for name, value in values.items():
            text = text.replace("${" + name + "}", value)
        found.append(text)
    return found


@pytest.mark.parametrize(
    ("action", "arn"),
    [
        # what the handlers call on ARNs the stacks' own names do not start (generated ids, other forms)
        ("lambda:ListTags", "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:0f4c2b1e-uuid"),
        ("ecs:ListServiceDeployments", "arn:aws:ecs:us-east-1:123456789012:service/default/video-converter-api"),
        (
            "ecs:DescribeServiceDeployments",
            "arn:aws:ecs:us-east-1:123456789012:service-deployment/default/video-converter-api/Ab12",
        ),
        (
            "ecs:DescribeServiceRevisions",
            "arn:aws:ecs:us-east-1:123456789012:service-revision/default/video-converter-api/4211",
        ),
        ("cloudwatch:PutDashboard", "arn:aws:cloudwatch::123456789012:dashboard/video-converter-us-east-1"),
        ("cloudwatch:ListTagsForResource", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:video-converter-Dead-1"),
        ("iam:ListRolePolicies", "arn:aws:iam::123456789012:role/video-converter-ConvertFunctionRole-AbC"),
        ("sns:GetSubscriptionAttributes", "arn:aws:sns:us-east-1:123456789012:video-converter-AlarmTopic-X:uuid"),
        ("s3:GetBucketAcl", "arn:aws:s3:::video-converter-uploadbucket-abc"),
        ("ecr:GetLifecyclePolicy", "arn:aws:ecr:us-east-1:123456789012:repository/video-converter-api"),
    ],
)
def test_the_handlers_calls_are_granted_on_their_resources(action: str, arn: str):
    statements = [s for s in deploy_role_statements() if "Condition" not in s]
    assert any(
        any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"]))
        and any(fnmatch.fnmatchcase(arn, r) for r in _arns(s))
        for s in statements
    ), f"{action} on {arn}"


def test_web_acl_associations_point_at_the_load_balancer():
    """What ``TARGET_ONLY`` relies on: the association protects the service's load balancer, nothing else."""
    associations = [r for r in deployed_resources() if r["Type"] == "AWS::WAFv2::WebACLAssociation"]
    assert associations
    for res in associations:
        arn = res["Properties"]["ResourceArn"]
        assert arn == {"Fn::GetAtt": ["Service", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"]}
