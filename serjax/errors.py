"""The one exception type a user sees: a clear sentence naming the file, line or field."""


class SerjaxError(Exception):
    """An error caused by the user's input (corpus, audio, config), not by a bug."""
