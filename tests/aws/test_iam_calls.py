"""Every boto3 call the code makes, checked against the IAM statements of the role that runs it, so a
missing permission fails here and not in production.

1. The source (video_converter/, functions/) is scanned with ``ast`` for calls on boto3 clients; each
   method must have an entry in ``CALLS`` (its IAM actions), or this test fails.
2. The API (FastAPI app) and the convert function (the Lambda handler) run a real flow against moto,
   with every boto3 client wrapped to record its calls and the role it runs as.
3. Each stack's role is rendered (the SAM template through the SAM translator; the Express Mode stack;
   the Copilot addon), its intrinsic functions resolved with the moto resources' names, and every
   recorded call's actions are evaluated against its statements. The API task roles must also grant
   nothing the API does not use.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from fastapi.testclient import TestClient
from moto.s3 import models as moto_s3_models
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from api.main import create_app
from tests.aws.conftest import CRASHING_FFMPEG, settings_for
from tests.fileserver import serve_files
from video_converter import aws as aws_module
from video_converter import mp4join
from video_converter.apikeys import KeyStore
from video_converter.conversion import fetched_source
from video_converter.queues import sqs as sqs_module
from video_converter.runtime import build_runtime
from video_converter.storage import ByteRange
from video_converter.storage import s3 as s3_module

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "video_converter", ROOT / "functions"]
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"

# boto3 client method -> IAM actions it needs, each on "object" (bucket/key), "bucket" or "queue".
# upload_file(obj): multipart parts and completion are s3:PutObject; s3transfer aborts a failed one.
# head_object/download_file on a missing key: 404 (not 403) only with s3:ListBucket.
# Presigned requests run with the signer's permissions when the browser uses them.
CALLS: dict[str, tuple[tuple[str, str], ...]] = {
    "upload_fileobj": (("s3:PutObject", "object"), ("s3:AbortMultipartUpload", "object")),
    "upload_file": (("s3:PutObject", "object"), ("s3:AbortMultipartUpload", "object")),
    "put_object": (("s3:PutObject", "object"),),
    "get_object": (("s3:GetObject", "object"), ("s3:ListBucket", "bucket")),
    "download_file": (("s3:GetObject", "object"), ("s3:ListBucket", "bucket")),
    "head_object": (("s3:GetObject", "object"), ("s3:ListBucket", "bucket")),
    "delete_object": (("s3:DeleteObject", "object"),),
    "delete_objects": (("s3:DeleteObject", "object"),),  # each key of the batch
    "list_objects_v2": (("s3:ListBucket", "bucket"),),
    "generate_presigned_url": (),  # the presigned operation's actions: PRESIGNED (checked below)
    "generate_presigned_post": (("s3:PutObject", "object"),),
    "send_message": (("sqs:SendMessage", "queue"),),
    "receive_message": (("sqs:ReceiveMessage", "queue"),),
    "delete_message": (("sqs:DeleteMessage", "queue"),),
    "change_message_visibility": (("sqs:ChangeMessageVisibility", "queue"),),
    # The webhook key: WEBHOOK_SECRET_PARAMETER names an SSM SecureString, read WithDecryption (KMS is
    # then called by SSM, under the function role's kms:Decrypt for that parameter).
    "get_parameter": (("ssm:GetParameter", "parameter"),),
    # Multipart uploads: begun, parts PUT by the browser to presigned UploadPart URLs, listed, completed
    # or aborted by the API (CreateMultipartUpload, UploadPart and CompleteMultipartUpload are s3:PutObject);
    # and a long video's join by copy: a multipart upload whose parts are the pieces' media copied inside
    # S3 (UploadPartCopy reads its source with s3:GetObject) and a leading part it uploads.
    "create_multipart_upload": (("s3:PutObject", "object"),),
    "upload_part": (("s3:PutObject", "object"),),
    "upload_part_copy": (("s3:PutObject", "object"), ("s3:GetObject", "copy_source")),
    "list_parts": (("s3:ListMultipartUploadParts", "object"),),
    "complete_multipart_upload": (("s3:PutObject", "object"),),
    "abort_multipart_upload": (("s3:AbortMultipartUpload", "object"),),
}

# What a presigned URL of each operation needs of the role that signs it (the browser's request runs
# with the signer's permissions).
PRESIGNED: dict[str, tuple[tuple[str, str], ...]] = {
    "get_object": (("s3:GetObject", "object"),),
    "upload_part": (("s3:PutObject", "object"),),
}

# Called only by `video-converter worker` polling SQS itself (a container no stack here deploys); in
# AWS the function's event source mapping receives and deletes, with the function role (checked below).
POLLER_ONLY = {"receive_message", "delete_message"}
# S3Storage.put_part (UploadPart through the API) is the Storage contract's; on AWS no code path sends a
# part itself: the browser PUTs them to presigned URLs (tests/aws/test_multipart_s3.py runs it on moto).
CONTRACT_ONLY = {"upload_part"}

# What the event source mapping does with the function's role (AWS: SQS event source permissions).
EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


# --- 1. the calls in the source -----------------------------------------------------------------------


def _is_client(node: ast.expr) -> bool:
    """``self.client``, ``client``, ``self._client``, ``s3_client``...: the objects boto3 calls go through."""
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name.lstrip("_").endswith("client")


def client_calls_in_source() -> dict[str, list[str]]:
    """boto3 method -> where it is called (file:line), for every call on a client object."""
    found: dict[str, list[str]] = {}
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and _is_client(node.func.value)
                    and not node.func.attr.startswith("_")
                ):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.setdefault(node.func.attr, []).append(where)
    return found


def test_the_scan_finds_the_s3_and_sqs_calls():
    calls = client_calls_in_source()
    assert {"upload_fileobj", "generate_presigned_post", "send_message", "change_message_visibility"} <= set(calls)


def test_every_boto3_call_in_the_source_has_an_iam_mapping():
    unmapped = {m: where for m, where in client_calls_in_source().items() if m not in CALLS}
    assert not unmapped, f"add these boto3 calls to CALLS with the IAM actions they need: {unmapped}"


def test_only_downloads_and_parts_are_presigned():
    text = (ROOT / "video_converter" / "storage" / "s3.py").read_text()
    assert sorted(re.findall(r'generate_presigned_url\(\s*"(\w+)"', text)) == sorted(PRESIGNED)


# --- 2. the calls the code makes, per role ---------------------------------------------------------------


@dataclass
class Call:
    role: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class Recorder:
    role: str = "unset"
    calls: list[Call] = field(default_factory=list)


class RecordingClient:
    """Wraps a boto3 client: every public method called through it is recorded with the role that was
    running when the client was made (the API's clients are made in API requests, the function's in
    its invocation)."""

    def __init__(self, client: Any, recorder: Recorder) -> None:
        self._client = client
        self._recorder = recorder
        self._role = recorder.role

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._recorder.calls.append(Call(self._role, name, args, kwargs))
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    make_s3, make_sqs, make_ssm = s3_module.make_s3_client, sqs_module.make_sqs_client, aws_module.make_ssm_client
    monkeypatch.setattr(s3_module, "make_s3_client", lambda: RecordingClient(make_s3(), rec))
    monkeypatch.setattr(sqs_module, "make_sqs_client", lambda: RecordingClient(make_sqs(), rec))
    monkeypatch.setattr(aws_module, "make_ssm_client", lambda: RecordingClient(make_ssm(), rec))
    return rec


@pytest.fixture
def broken_ffmpeg(install_ffmpeg: Callable[[str], Path]) -> Callable[[], Path]:
    """Installs, when called, an ffmpeg that fails the way a crashed encoder does."""
    return lambda: install_ffmpeg(CRASHING_FFMPEG)


@pytest.fixture
def flow(
    recorder: Recorder,
    aws,
    function_env,
    convert_app,
    make_sqs_event,
    lambda_context,
    make_clip,
    broken_ffmpeg,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """The API and the convert function through every path that reaches AWS; returns the recorder."""
    lambda_tmp = tmp_path / "lambda-tmp"
    lambda_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(lambda_tmp))
    clip = make_clip("clip.mp4", seconds=1.0, size="160x120")
    long_clip = make_clip("long.mp4", seconds=5.0, size="160x120", extra=("-g", "25"))
    monkeypatch.setenv("SEGMENT_SECONDS", "2")  # before the function's first invocation builds its runtime
    # Parts as small as these pieces (S3's and moto's minimum is 5 MiB), so the join copies them by range.
    monkeypatch.setattr(mp4join, "MIN_PART", 256)
    monkeypatch.setattr(mp4join, "PAD_SHARE", 1.0)
    monkeypatch.setattr(moto_s3_models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setenv("IMPORT_ALLOW_PRIVATE", "true")  # the import's link is a server on 127.0.0.1
    # The webhook key as prod gives it: a SecureString the function reads once when it starts.
    ssm = boto3.client("ssm", region_name=REGION)  # not recorded: the operator made it
    ssm.put_parameter(Name=WEBHOOK_SECRET, Value="s3cret", Type="SecureString")
    monkeypatch.setenv("WEBHOOK_SECRET_PARAMETER", WEBHOOK_SECRET)

    api_runtime = build_runtime(settings_for(aws, tmp_path, import_allow_private=True))
    operator = s3_module.S3Storage(aws.converted_bucket, client=aws.s3)  # not recorded: `video-converter keys`
    _, key = KeyStore(operator).create("the flow")
    recorder.role = "api"
    client = TestClient(create_app(api_runtime), headers={"Authorization": f"Bearer {key}"})  # AUTH=keys on AWS
    ticket = client.post("/api/uploads").json()  # presigned POST
    aws.s3.put_object(Bucket=aws.upload_bucket, Key=ticket["fields"]["key"], Body=clip.read_bytes())  # the browser
    job = client.post(
        "/api/jobs", json={"upload_id": ticket["upload_id"], "filename": "clip.mp4", "formats": ["thumbnail"]}
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["job_id"]
    with clip.open("rb") as fh:  # the curl path: streamed into S3 by the API
        second = client.post("/api/jobs", files={"file": ("clip.mp4", fh, "video/mp4")}, data={"formats": "mp3"})
    assert second.status_code == 201, second.text
    assert [j["job_id"] for j in client.get("/api/jobs").json()["jobs"]] == [second.json()["job_id"], job_id]
    assert client.post(f"/api/jobs/{job_id}/share").status_code == 201
    empty = client.post("/api/jobs", files={"file": ("empty.mp4", b"", "video/mp4")}, data={"formats": "mp3"})
    assert empty.status_code == 422  # refused, and the empty upload deleted
    multipart_flow(client, clip.read_bytes())

    recorder.role = "lambda"
    messages = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
    by_format = {json.loads(m["Body"])["format"]: m for m in messages["Messages"]}
    assert set(by_format) == {"thumbnail", "mp3"}
    assert convert_app.handler(make_sqs_event([by_format["thumbnail"]], aws.queue_arn), lambda_context()) == {
        "batchItemFailures": []
    }
    # A long video: the split, its parts and their join, each an invocation of its own.
    with long_clip.open("rb") as fh:
        recorder.role = "api"
        long_job = client.post("/api/jobs", files={"file": ("long.mp4", fh, "video/mp4")}, data={"formats": "360p"})
    assert long_job.status_code == 201, long_job.text
    recorder.role = "lambda"
    for _ in range(3):  # the whole message, then the parts, then the join
        batch = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        wanted = [m for m in batch.get("Messages", []) if long_job.json()["job_id"] in m["Body"]]
        assert wanted
        result = convert_app.handler(make_sqs_event(wanted, aws.queue_arn), lambda_context())
        assert result == {"batchItemFailures": []}
        for message in wanted:
            aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
    recorder.role = "api"
    assert client.get(f"/api/jobs/{long_job.json()['job_id']}").json()["status"] == "completed"
    recorder.role = "lambda"  # a join by copy that fails (a piece gone) aborts its upload
    lost = ByteRange(f"{long_job.json()['job_id']}/segments/360p/00000.mp4", 0, 300)
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found"):
        build_runtime(settings_for(aws, tmp_path)).converted.compose("x/joined.mp4", [(b"head",), (lost,)])

    recorder.role = "lambda"
    broken_ffmpeg()  # a retryable failure: the handler brings the retry forward on the queue
    failed = convert_app.handler(make_sqs_event([by_format["mp3"]], aws.queue_arn), lambda_context())
    assert failed["batchItemFailures"]

    # A job deleted while the function converts it: the function removes what the attempt wrote.
    recorder.role = "api"
    with clip.open("rb") as fh:
        doomed = client.post("/api/jobs", files={"file": ("doomed.mp4", fh, "video/mp4")}, data={"formats": "mp3"})
    assert doomed.status_code == 201, doomed.text
    doomed_id = doomed.json()["job_id"]
    recorder.role = "lambda"
    batch = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    wanted = [m for m in batch.get("Messages", []) if doomed_id in m["Body"]]
    assert wanted

    def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
        aws.s3.delete_object(Bucket=aws.converted_bucket, Key=f"{doomed_id}/job.json")  # as the API does
        return fetched_source(*args, **kwargs)

    monkeypatch.setattr("video_converter.conversion.fetched_source", deleted_meanwhile)
    assert convert_app.handler(make_sqs_event(wanted, aws.queue_arn), lambda_context()) == {"batchItemFailures": []}
    monkeypatch.setattr("video_converter.conversion.fetched_source", fetched_source)
    assert aws.s3.list_objects_v2(Bucket=aws.converted_bucket, Prefix=f"{doomed_id}/").get("KeyCount") == 0

    recorder.role = "api"
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
    assert client.get(f"/api/jobs/{job_id}/outputs/thumbnail", follow_redirects=False).status_code == 307
    # A second chance: formats added and a failed output retried, from the original in S3.
    added = client.post(f"/api/jobs/{job_id}/outputs", json={"formats": ["mp3"]})
    assert added.status_code == 201, added.text
    api_runtime.jobs.save_output(job_id, api_runtime.jobs.output(job_id, "thumbnail").failed("A fault."))
    retried = client.post(f"/api/jobs/{job_id}/outputs/thumbnail/retry")
    assert retried.status_code == 202, retried.text
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204  # the original, outputs and records
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert aws.s3.list_objects_v2(Bucket=aws.converted_bucket, Prefix=f"{job_id}/").get("KeyCount") == 0
    left = aws.s3.list_objects_v2(Bucket=aws.upload_bucket, Prefix=f"{job_id}/").get("Contents", [])
    assert [o["Key"] for o in left] == [f"{job_id}/ticket-used"]  # the spent ticket stays spent
    import_flow(client, recorder, aws, convert_app, make_sqs_event, lambda_context, clip)
    api_runtime.close()
    return recorder


def import_flow(
    client: TestClient, recorder: Recorder, aws: Any, app: Any, event: Any, context: Any, clip: Path
) -> None:
    """An import from a link: the API makes the job; the function streams the file into the upload store
    and queues the conversion."""
    with serve_files({"/clip.mp4": clip.read_bytes()}) as site:
        recorder.role = "api"
        url = f"{site}/clip.mp4"
        imported = client.post("/api/jobs", json={"source_url": url, "formats": ["mp3"]})
        assert imported.status_code == 201, imported.text
        import_id = imported.json()["job_id"]
        recorder.role = "lambda"
        batch = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        wanted = [m for m in batch.get("Messages", []) if import_id in m["Body"] and '"import"' in m["Body"]]
        assert wanted
        assert app.handler(event(wanted, aws.queue_arn), context()) == {"batchItemFailures": []}
    head = aws.s3.head_object(Bucket=aws.upload_bucket, Key=f"{import_id}/imported/source")
    assert head["ContentLength"] == clip.stat().st_size
    recorder.role = "api"


def multipart_flow(client: TestClient, data: bytes) -> None:
    """A multipart upload through the API (its one part PUT by the browser to the presigned URL), listed
    and completed; and another one cancelled."""
    ticket = client.post("/api/uploads", json={"filename": "clip.mp4", "size": len(data)}).json()
    upload_id = ticket["upload_id"]
    (part,) = client.post(f"/api/uploads/{upload_id}/parts", json={"numbers": [1]}).json()["parts"]
    put = requests.put(part["url"], data=data, headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert put.status_code == 200, put.text
    assert [p["etag"] for p in client.get(f"/api/uploads/{upload_id}").json()["received"]] == [put.headers["ETag"]]
    done = client.post(
        f"/api/uploads/{upload_id}/complete", json={"parts": [{"number": 1, "etag": put.headers["ETag"]}]}
    )
    assert done.status_code == 200, done.text
    other = client.post("/api/uploads", json={"filename": "clip.mp4", "size": len(data)}).json()
    assert client.delete(f"/api/uploads/{other['upload_id']}").status_code == 204


# --- 3. the roles, rendered ------------------------------------------------------------------------------


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


_NO_VALUE = object()
WEBHOOK_SECRET = "/video-converter/webhook-secret"


def resolve(node: Any, refs: dict[str, Any]) -> Any:
    """The intrinsic functions these policies use (Ref, GetAtt, Sub, Select, Split, If), with values
    from ``refs`` (``Name`` for Ref, ``Name.Attr`` for GetAtt); a condition is true when ``refs`` names
    it true, and an ``AWS::NoValue`` item of a list is dropped."""
    if isinstance(node, list):
        items = [resolve(item, refs) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref":
            return _NO_VALUE if value == "AWS::NoValue" else refs[value]
        if key == "Fn::If":
            return resolve(value[1] if refs.get(value[0]) else value[2], refs)
        if key == "Fn::GetAtt":
            return refs[".".join(value) if isinstance(value, list) else value]
        if key == "Fn::Sub":
            text, local = (value, {}) if isinstance(value, str) else (value[0], resolve(value[1], refs))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str({**refs, **local}[m[1]]), text)
        if key == "Fn::Select":
            return resolve(value[1], refs)[int(value[0])]
        if key == "Fn::Split":
            return resolve(value[1], refs).split(value[0])
    return {key: resolve(value, refs) for key, value in node.items()}


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(policy: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Allowed by an Allow statement (these roles have no Deny: asserted below; a statement with a
    Condition counts as granting nothing)."""
    policy = [s for s in policy if "Condition" not in s]
    return any(
        any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in as_list(s["Resource"]))
        for s in policy
    )


def queue_arn(url: str) -> str:
    account, name = url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{REGION}:{account}:{name}"


def base_refs(aws: Any) -> dict[str, Any]:
    return {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": "video-converter",
        "UploadBucketName": aws.upload_bucket,
        "ConvertedBucketName": aws.converted_bucket,
        "QueueUrl": aws.queue_url,
    }


def function_policy(aws: Any, role_name: str = "ConvertFunctionRole") -> list[dict[str, Any]]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    for name in ("ConvertFunction", "DeadLetterFunction", "SweepFunction"):  # one code, three handlers
        template["Resources"][name]["Properties"]["CodeUri"] = "s3://artifacts/convert.zip"
    template["Resources"]["FfmpegLayer"]["Properties"]["ContentUri"] = "s3://artifacts/ffmpeg.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        cfn = transform(copy.deepcopy(template), {}, _NoManagedPolicies())
    role = cfn["Resources"][role_name]["Properties"]
    assert cfn["Resources"]["ConvertFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ConvertFunctionRole", "Arn"]}
    refs = {
        **base_refs(aws),
        "UploadBucket": aws.upload_bucket,
        "UploadBucket.Arn": f"arn:aws:s3:::{aws.upload_bucket}",
        "ConvertedBucket": aws.converted_bucket,
        "ConvertedBucket.Arn": f"arn:aws:s3:::{aws.converted_bucket}",
        "ConvertQueue": aws.queue_url,
        "ConvertQueue.Arn": queue_arn(aws.queue_url),
        "ConvertFunctionLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/video-converter-convert",
        "WebhookSecretParameter": WEBHOOK_SECRET,  # as set in prod: its grants are checked too
        "HasWebhookSecret": True,
        "ConvertDeadLetterQueue.Arn": queue_arn(aws.dlq_url),
        "DeadLetterFunctionLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/video-converter-dlq",
        "SweepFunctionLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/video-converter-sweep",
    }
    return [s for p in role["Policies"] for s in statements(resolve(p["PolicyDocument"], refs))]


def express_task_policy(aws: Any) -> list[dict[str, Any]]:
    template = yaml_parse((ROOT / "deploy" / "api-express.yaml").read_text())
    service = template["Resources"]["Service"]["Properties"]
    assert service["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    role = template["Resources"]["TaskRole"]["Properties"]
    assert not role.get("ManagedPolicyArns")
    return [s for p in role["Policies"] for s in statements(resolve(p["PolicyDocument"], base_refs(aws)))]


def copilot_task_policy(aws: Any) -> list[dict[str, Any]]:
    addon = yaml_parse((ROOT / "copilot" / "api" / "addons" / "storage-access.yml").read_text())
    (policy,) = [r for r in addon["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    return statements(resolve(policy["Properties"]["PolicyDocument"], base_refs(aws)))


def required(call: Call) -> list[tuple[str, str]]:
    """(action, resource ARN) pairs one recorded call needs."""
    params = dict(call.kwargs)
    if call.method in ("upload_fileobj", "upload_file"):
        params.update(Bucket=call.args[1], Key=call.args[2])
    elif call.method == "download_file":
        params.update(Bucket=call.args[0], Key=call.args[1])
    elif call.method == "generate_presigned_url":
        params.update(call.kwargs["Params"])
    needs = []
    actions = PRESIGNED[call.args[0]] if call.method == "generate_presigned_url" else CALLS[call.method]
    for action, kind in actions:
        if kind == "queue":
            needs.append((action, queue_arn(params["QueueUrl"])))
        elif kind == "parameter":
            needs.append((action, f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{params['Name']}"))
        elif kind == "bucket":
            needs.append((action, f"arn:aws:s3:::{params['Bucket']}"))
        elif kind == "copy_source":
            needs.append((action, f"arn:aws:s3:::{params['CopySource']['Bucket']}/{params['CopySource']['Key']}"))
        elif call.method == "delete_objects":
            needs += [(action, f"arn:aws:s3:::{params['Bucket']}/{o['Key']}") for o in params["Delete"]["Objects"]]
        else:
            needs.append((action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"))
    return needs


def _check(policy: list[dict[str, Any]], calls: list[Call]) -> list[str]:
    assert all(s["Effect"] == "Allow" for s in policy)
    # A statement with a Condition is not evaluated here, so it can grant none of these calls.
    policy = [s for s in policy if "Condition" not in s]
    return [
        f"{c.method} needs {action} on {arn}"
        for c in calls
        for action, arn in required(c)
        if not allowed(policy, action, arn)
    ]


def test_the_flow_reaches_every_call_in_the_source(flow: Recorder):
    seen = {c.method for c in flow.calls}
    assert seen <= set(CALLS), f"calls without an IAM mapping: {seen - set(CALLS)}"
    missing = set(client_calls_in_source()) - seen - POLLER_ONLY - CONTRACT_ONLY
    assert not missing, f"extend the flow so these calls are checked against a role: {missing}"
    assert {c.role for c in flow.calls} == {"api", "lambda"}


def test_the_function_role_allows_every_call_the_handler_makes(flow: Recorder, aws):
    policy = function_policy(aws)
    calls = [c for c in flow.calls if c.role == "lambda"]
    assert {"download_file", "upload_file", "put_object", "change_message_visibility"} <= {c.method for c in calls}
    assert _check(policy, calls) == []
    # and what the event source mapping does with it
    for action in EVENT_SOURCE_ACTIONS:
        assert allowed(policy, action, queue_arn(aws.queue_url)), action


@pytest.mark.parametrize("stack", ["express", "copilot"])
def test_the_api_task_role_allows_every_call_the_api_makes_and_nothing_else(flow: Recorder, aws, stack: str):
    policy = express_task_policy(aws) if stack == "express" else copilot_task_policy(aws)
    calls = [c for c in flow.calls if c.role == "api"]
    assert {"generate_presigned_post", "head_object", "send_message", "delete_object"} <= {c.method for c in calls}
    assert _check(policy, calls) == []
    used = {action for c in calls for action, _ in required(c)}
    granted = {a for s in policy for a in as_list(s["Action"])}
    assert granted == used, f"granted but never used: {granted - used}; used but not granted: {used - granted}"


def test_a_missing_permission_is_caught(flow: Recorder, aws):
    """The check itself: drop SendMessage from the Express task role and the API's send fails it."""
    policy = [s for s in express_task_policy(aws) if "sqs:SendMessage" not in as_list(s["Action"])]
    problems = _check(policy, [c for c in flow.calls if c.role == "api"])
    assert problems and all("sqs:SendMessage" in p for p in problems)


def test_the_function_role_cannot_replace_or_delete_originals(flow: Recorder, aws):
    """It writes only a long video's pieces next to an original, and queues only their messages."""
    policy = function_policy(aws)
    assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::{aws.upload_bucket}/x/source")
    assert not allowed(policy, "s3:DeleteObject", f"arn:aws:s3:::{aws.upload_bucket}/x/source")
    assert allowed(policy, "s3:PutObject", f"arn:aws:s3:::{aws.upload_bucket}/x/segments/source/00001.mp4")
    assert allowed(policy, "sqs:SendMessage", queue_arn(aws.queue_url))


def test_the_function_role_reads_only_the_webhook_secret(aws):
    """WEBHOOK_SECRET_PARAMETER's SecureString: GetParameter on it alone; its key only through SSM."""
    policy = function_policy(aws)
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{WEBHOOK_SECRET}"
    assert allowed(policy, "ssm:GetParameter", parameter)
    assert not allowed(policy, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/other")
    (decrypt,) = [s for s in policy if s.get("Sid") == "DecryptWebhookSecret"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Condition"] == {
        "StringEquals": {
            "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
            "kms:EncryptionContext:PARAMETER_ARN": parameter,
        }
    }


def test_the_recovery_role_allows_every_call_the_dead_letter_consumer_and_the_sweep_make(
    recorder: Recorder,
    aws,
    function_env,
    convert_app,
    make_sqs_event,
    lambda_context,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A long video's output in pieces, silent past the sweep's limit: the sweep reads its plan and its
    pieces and sends them again; the dead-letter consumer fails it and tidies its pieces and the split."""
    from video_converter import keys, segmenting
    from video_converter.model import JobRecord, OutputRecord, SegmentPlan, SourceInfo, utcnow

    recorder.role = "setup"
    rt = build_runtime(settings_for(aws, tmp_path))
    job_id = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"
    rt.jobs.save_job(
        JobRecord(job_id=job_id, filename="a.mp4", stem="a", formats=["360p"], source_key="k", source_size=1)
    )
    plan = SegmentPlan(
        source=SourceInfo(duration=4.0, video_codec="h264"), starts=[0.0, 2.0], duration=4.0, has_audio=False
    )
    rt.uploads.put_bytes(segmenting.plan_key(job_id), plan.model_dump_json().encode())
    rt.converted.put_bytes(segmenting.encoded_piece_key(job_id, "360p", 0), b"piece")
    old = (
        OutputRecord(format="360p")
        .started(1)
        .segmented(2)
        .model_copy(update={"updated_at": utcnow().replace(year=2000)})
    )
    rt.converted.put_bytes(keys.status_key(job_id, "360p"), old.model_dump_json().encode())

    later = utcnow() + timedelta(days=1)  # the piece stored above is the output's last sign of life
    monkeypatch.setattr("video_converter.sweep.utcnow", lambda: later)
    recorder.role = "recovery"
    assert convert_app.sweep_handler({}, lambda_context())["resent"] == 1
    sent = aws.sqs.receive_message(QueueUrl=aws.queue_url, AttributeNames=["All"])["Messages"]
    dead = make_sqs_event(sent, queue_arn(aws.dlq_url))
    assert convert_app.deadletter_handler(dead, lambda_context()) == {"batchItemFailures": []}
    assert rt.jobs.output(job_id, "360p").status.value == "failed"
    assert rt.uploads.list(segmenting.segments_prefix(job_id)) == []  # tidied

    calls = [c for c in recorder.calls if c.role == "recovery"]
    assert {"list_objects_v2", "get_object", "put_object", "send_message", "delete_object"} <= {c.method for c in calls}
    assert _check(function_policy(aws, "RecoveryFunctionRole"), calls) == []
    for action in EVENT_SOURCE_ACTIONS:
        assert allowed(function_policy(aws, "RecoveryFunctionRole"), action, queue_arn(aws.dlq_url)), action
