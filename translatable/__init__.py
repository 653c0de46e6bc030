"""Messages that domain code writes in English and a page shows in the reader's language.

Refusals of the account lifecycle and roles, the password policy's rules, the directory's errors
and the labels of the runtime settings are made with :func:`N_`: the message template is marked for
extraction (``N_`` is one of Babel's default keywords; docs/i18n.md) and its values are kept. The
result is a :class:`Text`, a ``str`` whose value is the English text, so the command line prints it
and the audit trail records it in English. The web layer shows it with :func:`idp.i18n.shown`,
which translates the template (and any value that is a :class:`Text` itself) in the request's
language. This package knows no web framework, so every layer may mark its messages.
"""

from __future__ import annotations

__all__ = ["N_", "Text"]


class Text(str):
    """English text that remembers the message template and values it was made of.

    ``Text(code)`` without values is a word the catalogue has already (a state such as ``approved``:
    the admin console's words), shown translated like any other message.
    """

    template: str
    params: dict[str, object]

    def __new__(cls, template: str, **params: object) -> "Text":
        text = super().__new__(cls, template % params if params else template)
        text.template, text.params = str(template), params
        return text


def N_(template: str, **params: object) -> Text:
    """``template`` marked for translation, with ``params`` for its ``%(name)s`` placeholders: the
    English text now; the page's language where :func:`shown` shows it."""
    return Text(template, **params)
