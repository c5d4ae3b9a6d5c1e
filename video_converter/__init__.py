"""video-converter: turn any uploaded video into the formats people need.

The core (presets, job model, FFmpeg runner, worker) imports no web framework and no AWS SDK; those live
behind the storage and queue interfaces and in the entry points (``api``, ``functions/convert``).
"""

__version__ = "0.1.0"
