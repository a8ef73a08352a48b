"""Checks on how errors read: one plain line, as users see them."""


def one_line(exc: BaseException) -> bool:
    """True when the error says something, in one line.

    >>> one_line(ValueError("bad value")), one_line(ValueError("two\\nlines")), one_line(ValueError())
    (True, False, False)
    """
    text = str(exc)
    return bool(text) and "\n" not in text
