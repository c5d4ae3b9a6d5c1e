"""Streams: a job's adaptive stream (HLS playlists, DASH manifest) and its storyboard's WebVTT track,
written on each request with fresh signed URLs of the media files (local signed URLs, or S3 presigned).

They take the job through the owner check every job route uses (``JobDep``: another owner's job is
404), then look the output up as the download route does (``JobDocuments.completed_output``)."""

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobDep
from api.responses import NO_JOB, JobId, answers, error
from video_converter import streams
from video_converter.errors import NotFound
from video_converter.playback import PLAYLIST_NAME

router = APIRouter(prefix="/api/jobs", tags=["streams"])

# The signed URLs inside expire: never cached by a browser or a proxy past that.
NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/{job_id}/stream/{name}",
    response_class=Response,
    responses=answers(
        {
            200: {
                "content": {"application/vnd.apple.mpegurl": {}, "application/dash+xml": {}},
                "description": "master.m3u8 (HLS), a media playlist it names, or manifest.mpd (DASH).",
            }
        },
        NO_JOB,
        error(409, "The hls output is not ready (or failed).", "The hls output is not ready yet (processing)."),
    ),
)
async def stream_file(job_id: JobId, name: str, _: JobDep, documents: DocumentsDep) -> Response:
    """The stream of a job with the ``hls`` format: ``master.m3u8`` for HLS players (hls.js, Safari,
    ExoPlayer, AVPlayer), ``manifest.mpd`` for DASH players (dash.js, Shaka); the media files are
    named by signed URLs that expire (DOWNLOAD_URL_TTL), so a player fetches the playlist again to go on."""
    if name != streams.MANIFEST and not PLAYLIST_NAME.fullmatch(name):
        raise NotFound("The stream has no such file.")
    text = await run_in_threadpool(documents.stream_document, job_id, name)
    return Response(text, media_type=streams.media_type(name), headers=NO_STORE)


@router.get(
    "/{job_id}/storyboard.vtt",
    response_class=Response,
    responses=answers(
        {200: {"content": {"text/vtt": {}}, "description": "The WebVTT thumbnails track."}},
        NO_JOB,
        error(409, "The storyboard is not ready.", "The storyboard output is not ready yet (processing)."),
    ),
)
async def storyboard_track(job_id: JobId, _: JobDep, documents: DocumentsDep) -> Response:
    """The WebVTT thumbnails track of a job with the ``storyboard`` format: a cue every few seconds whose
    text is the sprite's signed URL with the frame's tile (``#xywh=x,y,w,h``)."""
    text = await run_in_threadpool(documents.storyboard_track, job_id)
    return Response(text, media_type="text/vtt", headers=NO_STORE)
