"""Work queues: SQLite locally, SQS on AWS, in-memory for tests.

A message names one output of a job, or the MP4 sizes of a job, converted together from one decode;
for a long video, one piece of them, one part of their sound, or the join of one output.
"""

from .base import Message, Queue
from .memory import MemoryQueue
from .sqlite import SqliteQueue

__all__ = ["MemoryQueue", "Message", "Queue", "SqliteQueue"]
