"""Work queues: one message per (job, format). SQLite locally, SQS on AWS, in-memory for tests."""

from .base import Message, Queue
from .memory import MemoryQueue
from .sqlite import SqliteQueue

__all__ = ["MemoryQueue", "Message", "Queue", "SqliteQueue"]
