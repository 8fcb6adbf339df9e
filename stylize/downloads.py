"""A result as downloaded: the stored JPEG, or the same picture as PNG or WebP.

The pages (the owner's job page, a share link) and the API answer ``?format=`` alike.
"""

import os

from django.http import HttpResponse
from django.utils.translation import gettext as _

from . import imaging
from .services.job_files import DOWNLOAD_FORMATS, job_result_encoded
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
    the format; default ``job.result_download_name``). Raises ``UnknownDownloadFormat``."""
    filename = filename or job.result_download_name
    image_format = DOWNLOAD_FORMATS.get((format_name or "jpeg").lower())
    if image_format is None:
        raise UnknownDownloadFormat(format_name)
    if image_format == imaging.RESULT_FORMAT:
        return private_file_response(job.result_image, filename=filename, download=download)
    filename = os.path.splitext(filename)[0] + imaging.FORMAT_EXTENSIONS[image_format]
    response = HttpResponse(job_result_encoded(job, image_format),
                            content_type=imaging.FORMAT_CONTENT_TYPES[image_format])
    disposition = "attachment" if download else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
