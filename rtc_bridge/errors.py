"""Errors a media backend raises to the signaling layer."""

from __future__ import annotations


class MediaUnavailableError(Exception):
    """The media server is down, slow or refused a request.

    ``signaling`` answers the ``join`` with ``unavailable``; the call is not
    lost, and a later ``join`` tries again.
    """


class MediaSignalError(ValueError):
    """A user's signal cannot be applied by the server's peer (a malformed
    description or candidate): the ``signal`` ack says ``invalid``."""
