"""The private storage of users' photos and results (``STORAGES["private"]``).

On one machine it is a folder outside ``MEDIA_ROOT`` (``PRIVATE_MEDIA_ROOT``) that no URL
route serves; on S3 it is a prefix of private objects. Either way the files are read
only through the owner-checked views and API, which stream them.
"""

import mimetypes
import os

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.http import FileResponse


class PrivateFileSystemStorage(FileSystemStorage):
    """A ``FileSystemStorage`` at ``settings.PRIVATE_MEDIA_ROOT`` (unless given a
    ``location``), read when used, and without URLs: asking for one is a bug."""

    @property
    def base_location(self):
        return self._value_or_setting(self._location, settings.PRIVATE_MEDIA_ROOT)

    @property
    def location(self):
        return os.path.abspath(self.base_location)

    def url(self, name):
        raise ValueError(
            f"{name} is a private file and has no URL: serve it through the owner-checked "
            "views (stylize:job_photo, stylize:job_result) or the API."
        )


def private_file_response(field_file, *, filename: str, download: bool = False):
    """Stream a private file to its owner (the caller has checked who asks).

    The browser is told what the file is and may not guess otherwise (``nosniff``),
    what to call it (``Content-Disposition``, ``attachment`` when ``download``), and
    that neither it nor anything between may keep a copy (``private, no-store``).
    """
    content_type = mimetypes.guess_type(field_file.name)[0] or ""
    if not content_type.startswith("image/"):
        content_type = "application/octet-stream"
    response = FileResponse(
        field_file.open("rb"),
        as_attachment=download,
        filename=filename,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


def versioned_url(url: str, field_file) -> str:
    """``url`` with ``?v=`` and the start of ``field_file``'s random name: a new file (a
    new painting, a new sample) is a new URL, so no cache shows the one it replaced."""
    version = field_file.name.rsplit("/", 1)[-1].split(".", 1)[0][:12]
    return f"{url}?v={version}"
