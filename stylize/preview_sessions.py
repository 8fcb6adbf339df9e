"""What a browser session remembers of previews (the web pages and the API's session
use): the previews made in it without an account, which only it may see
(``selectors.preview_list_for``) until it logs in or signs up and they become the
account's (``signals.user_logged_in_claim_previews``), and the job a visitor asked for
before signing up, so the upload page shows it again afterwards
(docs/design/previews.md)."""

#: The ids of the previews this session made without an account, newest last.
PREVIEWS_SESSION_KEY = "stylize_previews"
#: ``{"preview": id, "choices": {...}}``: the job a visitor asked for from a preview.
PENDING_SESSION_KEY = "stylize_preview_pending"
#: How many previews a session remembers (each lives an hour anyway).
REMEMBERED = 10


def session_preview_ids(session) -> list[str]:
    """The ids of the previews this session made without an account."""
    ids = session.get(PREVIEWS_SESSION_KEY) if session is not None else None
    return [str(preview_id) for preview_id in ids] if isinstance(ids, list) else []


def session_preview_remember(session, preview_id) -> None:
    """Remember a preview made in this session without an account."""
    ids = [item for item in session_preview_ids(session) if item != str(preview_id)]
    session[PREVIEWS_SESSION_KEY] = [*ids, str(preview_id)][-REMEMBERED:]


def session_pending_set(session, *, preview_id, choices: dict) -> None:
    """Remember the job asked for from ``preview_id`` with ``choices`` (JSON-able: the
    style's slug, not the style), to show it again once the visitor has an account."""
    session[PENDING_SESSION_KEY] = {"preview": str(preview_id), "choices": dict(choices)}


def session_pending(session) -> dict | None:
    """The job a visitor asked for before logging in, or None."""
    pending = session.get(PENDING_SESSION_KEY) if session is not None else None
    if isinstance(pending, dict) and pending.get("preview"):
        return {"preview": str(pending["preview"]), "choices": dict(pending.get("choices") or {})}
    return None


def session_pending_clear(session) -> None:
    session.pop(PENDING_SESSION_KEY, None)
