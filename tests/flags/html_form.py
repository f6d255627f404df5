"""Read a rendered form the way a browser submits it, so tests post exactly what a page holds."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, action_contains: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action_contains = action_contains
        self.in_form = False
        self.disabled_depth = 0  # open <fieldset disabled> elements
        self.fieldsets: list[bool] = []
        self.fields: list[tuple[str, str]] = []
        self.select: dict[str, str | None] | None = None
        self.option: dict[str, str] | None = None
        self.textarea: tuple[str, list[str]] | None = None
        self.buttons: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action_contains in a.get("action", ""):
            self.in_form = True
            return
        if not self.in_form:
            return
        if tag == "fieldset":
            self.fieldsets.append("disabled" in a)
            return
        disabled = any(self.fieldsets) or "disabled" in a
        name = a.get("name", "")
        if tag == "input" and name and not disabled:
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on")))
            elif kind not in ("submit", "button", "reset", "image", "file"):
                self.fields.append((name, a.get("value", "")))
        elif tag == "button":
            self.buttons.append({**a, "disabled": "1" if disabled else ""})
        elif tag == "select" and name and not disabled:
            self.select = {"name": name, "value": None, "first": None}
        elif tag == "option" and self.select is not None:
            self.option = {"value": a.get("value"), "text": "", "selected": "selected" in a}  # type: ignore[dict-item]
        elif tag == "textarea" and name and not disabled:
            self.textarea = (name, [])

    def handle_data(self, data: str) -> None:
        if self.option is not None:
            self.option["text"] += data
        if self.textarea is not None:
            self.textarea[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self.in_form:
            return
        if tag == "form":
            self.in_form = False
        elif tag == "fieldset" and self.fieldsets:
            self.fieldsets.pop()
        elif tag == "option" and self.option is not None and self.select is not None:
            value = self.option["value"]
            value = self.option["text"] if value is None else value
            if self.select["first"] is None:
                self.select["first"] = value
            if self.option["selected"]:
                self.select["value"] = value
            self.option = None
        elif tag == "select" and self.select is not None:
            value = (
                self.select["value"] if self.select["value"] is not None else self.select["first"]
            )
            self.fields.append((str(self.select["name"]), value or ""))
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            text = "".join(self.textarea[1])
            # Browsers drop one newline right after <textarea>, and send line breaks as CRLF.
            text = text[1:] if text.startswith("\n") else text
            self.fields.append((self.textarea[0], text.replace("\r\n", "\n").replace("\n", "\r\n")))
            self.textarea = None


def read_form(html: str, action_contains: str = "/values/") -> dict[str, str]:
    """The name → value pairs the browser would post (no submit button), as a dict."""
    reader = _FormReader(action_contains)
    reader.feed(html)
    data: dict[str, str] = {}
    for name, value in reader.fields:
        data.setdefault(name, value)
    return data


def form_buttons(html: str, action_contains: str = "/values/") -> list[dict[str, str]]:
    reader = _FormReader(action_contains)
    reader.feed(html)
    return reader.buttons
