"""``UserLanguageMiddleware``: the language a logged-in user browses in, remembered.

The worker writes a user's emails without a request to take the language from, so
the language the page was shown in (``LocaleMiddleware``'s choice: the switcher's
cookie, else ``Accept-Language``) is stored on their profile (``Profile.language``).
The session notes what was stored, so it costs a write only when the language changes.
"""

from django.utils import translation

from .services.accounts import profile_language_set

SESSION_KEY = "stylize_language"


class UserLanguageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        # After the view, so a log-in counts (a switch counts on the page it leads to).
        language = translation.get_language()
        if user is not None and user.is_authenticated and hasattr(request, "session") \
                and request.session.get(SESSION_KEY) != language:
            profile_language_set(user=user, language=language)
            request.session[SESSION_KEY] = language
        return response
