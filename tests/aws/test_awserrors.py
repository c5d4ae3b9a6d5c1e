"""error_code, shared by S3Storage and SqsQueue: the code of a botocore ClientError, "" for anything else."""

from __future__ import annotations

from botocore.exceptions import ClientError

from video_converter.awserrors import error_code


def test_the_code_of_a_client_error() -> None:
    queue = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}}
    assert error_code(ClientError(queue, "ReceiveMessage")) == "AWS.SimpleQueueService.NonExistentQueue"
    assert error_code(ClientError({"Error": {"Code": "404"}}, "HeadObject")) == "404"


def test_other_errors_have_no_code() -> None:
    assert error_code(ValueError("no response")) == ""
    assert error_code(ClientError({}, "GetObject")) == ""
