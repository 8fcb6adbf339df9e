"""A result as downloaded: the stored JPEG, or the same picture as PNG or WebP.

The pages (the owner's job page, a share link) and the API answer ``?format=`` alike.
A PNG or WebP is encoded once, by the first download that asks for it, and kept with
the job's files (``job_files.job_result_copy``); every later download streams that file.
"""

import os

from django.http import Http404, HttpResponse
from django.utils.translation import gettext as _

from .imaging.encoding import FORMAT_EXTENSIONS, RESULT_FORMAT
from .models import StyleJob
from .services.job_files import DOWNLOAD_FORMATS, ResultCopyBusy, job_result_copy
from .storage import private_file_response


class UnknownDownloadFormat(ValueError):
    def __init__(self, asked: str):
        super().__init__(_("A result downloads as JPEG, PNG or WebP (format=jpeg, png or "
                           "webp), not %(asked)r.") % {"asked": asked[:20]})


def result_file_response(job, *, format_name: str | None = None, download: bool = False,
                         filename: str | None = None):
    """The job's result for its owner or a share link's visitor, at full size, as
    ``format_name`` (``job_files.DOWNLOAD_FORMATS``; None or empty: as stored, a JPEG),
    with ``private_file_response``'s headers, named ``filename`` (its extension that of
    the format; default ``job.result_download_name``). Raises ``UnknownDownloadFormat``.

    A PNG or WebP not made yet is made now (``job_result_copy``); while another request
    is making it, the answer is a 503 with ``Retry-After`` and a readable plain-text
    message, never a second encoding. Raises ``Http404`` if the job was deleted
    meanwhile.
    """
    filename = filename or job.result_download_name
    image_format = DOWNLOAD_FORMATS.get((format_name or "jpeg").lower())
    if image_format is None:
        raise UnknownDownloadFormat(format_name)
    if image_format == RESULT_FORMAT:
        return private_file_response(job.result_image, filename=filename, download=download)
    filename = os.path.splitext(filename)[0] + FORMAT_EXTENSIONS[image_format]
    try:
        copy = job_result_copy(job=job, image_format=image_format)
    except ResultCopyBusy as busy:
        response = HttpResponse(
            _("This download is being prepared. Please try again in a few seconds."),
            status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(busy.retry_after)
        response["Cache-Control"] = "private, no-store"
        return response
    except StyleJob.DoesNotExist as exc:
        raise Http404(_("No such image.")) from exc
    return private_file_response(copy, filename=filename, download=download)
