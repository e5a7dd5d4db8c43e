#!/usr/bin/python3
"""Reference renderer for chat templates: Python Jinja2 with Hugging Face's settings.

Usage: /usr/bin/python3 render_jinja.py TEMPLATE.jinja CASES.json

CASES.json is an array of objects {"messages": [...], "tools": [...] (optional),
"add_generation_prompt": bool, "bos_token": str, "eos_token": str,
"extra": {...} (optional top-level variables), "now": epoch seconds (optional)}.
Prints one JSON array with, per case, {"ok": true, "out": "..."} or
{"ok": false, "error": "..."} (ensure_ascii, so the bytes survive any locale).

The environment mirrors transformers.utils.chat_template_utils._compile_jinja_template:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
loopcontrols extension, tojson = json.dumps(x, ensure_ascii=False, indent=indent,
separators=separators, sort_keys=sort_keys), and the globals raise_exception and
strftime_now. The {% generation %} tag of transformers' AssistantTracker is
emulated by a tiny extension that renders its body unchanged.
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders the body as is."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def main():
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        source = f.read()
    with open(sys.argv[2], encoding="utf-8") as f:
        cases = json.load(f)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    now = [None]

    def strftime_now(fmt):
        t = datetime.now() if now[0] is None else datetime.fromtimestamp(now[0])
        return t.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    results = []
    try:
        template = env.from_string(source)
    except Exception as e:  # a syntax error fails every case
        template = None
        err = "%s: %s" % (type(e).__name__, e)
    for case in cases:
        if template is None:
            results.append({"ok": False, "error": err})
            continue
        now[0] = case.get("now")
        kw = dict(case.get("extra") or {})
        kw["messages"] = case["messages"]
        if case.get("tools") is not None:
            kw["tools"] = case["tools"]
        kw["add_generation_prompt"] = case.get("add_generation_prompt", False)
        kw["bos_token"] = case.get("bos_token", "")
        kw["eos_token"] = case.get("eos_token", "")
        try:
            results.append({"ok": True, "out": template.render(**kw)})
        except Exception as e:
            results.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
