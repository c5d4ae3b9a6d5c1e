"""Object storage: a narrow interface with disk, in-memory and S3 implementations."""

from .base import ByteRange, Listed, ObjectNotFound, Readable, Storage, validate_key
from .local import LocalStorage
from .memory import MemoryStorage

__all__ = [
    "ByteRange",
    "Listed",
    "LocalStorage",
    "MemoryStorage",
    "ObjectNotFound",
    "Readable",
    "Storage",
    "validate_key",
]
