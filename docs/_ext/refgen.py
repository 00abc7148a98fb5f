"""Reference pages generated at build time from the code itself, so they cannot drift from it.

- classroom.yaml and site.yaml: every model's fields (type, default, description) from the pydantic models'
  JSON schema (the same schema `reconcile schema` prints and ``schemas/classroom.schema.json`` holds);
- the CLI: every command and option from the argparse parser (``reconciler.cli.main.build_parser``);
- the REST API: every path and method from the OpenAPI document (``reconciler.service.openapi.document``).

The Markdown goes to ``docs/reference/generated/`` (git-ignored), which the hand-written reference pages
``{include}``.  Nothing here needs root, the network or a running service: the models, the parser and the
document are plain Python values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "reference" / "generated"


# ---- Markdown helpers ----------------------------------------------------------------------------------------


def cell(text: object) -> str:
    """Text for one table cell: one line, pipes and angle brackets escaped."""
    value = " ".join(str(text).split())
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def code(text: object) -> str:
    """Inline code that survives a table cell (pipes escaped, backticks fenced)."""
    value = " ".join(str(text).split()).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


# ---- configuration files: the pydantic models' JSON schema --------------------------------------------------


def _anchor(prefix: str, model: str) -> str:
    return f"{prefix}-{model.lower()}"


# The two value shapes classroom.yaml and site.yaml share, said in words instead of as their regular expressions.
SHAPES = {
    "[kKmMgGtT]": "size (bytes, or `512Mi`, `1.5GiB`, `1G`)",
    "[0-9]+m": "CPUs (`1`, `0.5` or `500m`)",
}


def _shape(schema: dict) -> str | None:
    for part in schema.get("anyOf", ()):
        for marker, words in SHAPES.items():
            if marker in part.get("pattern", ""):
                return words
    return None


def schema_type(schema: dict, prefix: str) -> str:
    """A field's type in words, with a link to a nested model's table."""
    shape = _shape(schema)
    if shape:
        return shape
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(prefix, name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [schema_type(part, prefix) for part in schema[key] if part.get("type") != "null"]
            optional = any(part.get("type") == "null" for part in schema[key])
            return " or ".join(dict.fromkeys(parts)) + (" (or null)" if optional else "")
    if "enum" in schema:
        return " or ".join(code(json.dumps(value)) for value in schema["enum"])
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        words = [schema_type({**schema, "type": one}, prefix) for one in kind if one != "null"]
        return " or ".join(words) + (" (or null)" if "null" in kind else "")
    if kind == "array":
        item = schema_type(schema.get("items", {}), prefix)
        return f"list of ({item})" if " or " in item else f"list of {item}"
    if kind == "object":
        for pattern, values in schema.get("patternProperties", {}).items():
            return f"map of names ({code(pattern)}) to {schema_type(values, prefix)}"
        values = schema.get("additionalProperties")
        return f"map of names to {schema_type(values, prefix)}" if isinstance(values, dict) else "mapping"
    if kind == "string" and schema.get("format"):
        return f"string ({schema['format']})"
    if kind == "string" and "pattern" in schema:
        return f"string matching {code(schema['pattern'])}"
    bounds = [
        f"{word} {schema[key]}"
        for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
        if key in schema
    ]
    if kind is None:
        return "any"
    return str(kind) + (f" ({', '.join(bounds)})" if bounds else "")


def model_tables(schema: dict, prefix: str, file_name: str) -> list[str]:
    """One table per model: the file's top level first, then each nested model, alphabetically."""
    models = [(schema.get("title", file_name), schema, True)]
    models += [(name, sub, False) for name, sub in sorted(schema.get("$defs", {}).items())]
    return tables_of(models, prefix, file_name)


def tables_of(models: list[tuple[str, dict, bool]], prefix: str, file_name: str = "", api: bool = False) -> list[str]:
    """Tables of a configuration file's models (with defaults), or of an API's schemas (with what is required)."""
    lines: list[str] = []
    for name, model, top in models:
        lines += [f"({_anchor(prefix, name if not top else 'top')})=", ""]
        lines += [f"### {code(file_name) + ' (top level)' if top else code(name)}", ""]
        if model.get("description"):
            lines += [cell(model["description"]), ""]
        properties = model.get("properties", {})
        if not properties:
            lines += [f"A value: {schema_type(model, prefix)}.", ""]
            continue
        required = set(model.get("required", ()))
        rows = []
        for field, spec in properties.items():
            if api:
                default = "yes" if field in required else "no"
            elif field in required:
                default = "*required*"
            elif "default" in spec:
                default = code(json.dumps(spec["default"]))
            else:  # a default_factory: an empty list or mapping, or a nested model with its own defaults
                default = {"array": "`[]`", "object": "`{}`"}.get(spec.get("type", ""), "its defaults")
            rows.append([code(field), schema_type(spec, prefix), default, cell(spec.get("description", ""))])
        lines += table(["field", "type", "required" if api else "default", "description"], rows)
        if model.get("additionalProperties") is False:
            lines += ["Unknown keys are refused.", ""]
    return lines


def config_reference(schema: dict, prefix: str, file_name: str) -> str:
    return "\n".join(model_tables(schema, prefix, file_name))


def classroom_reference() -> str:
    from reconciler.config.classroom import json_schema

    return config_reference(json_schema(), "classroom", "classroom.yaml")


def site_reference() -> str:
    from reconciler.config.site import Site

    return config_reference(Site.model_json_schema(), "site", "site.yaml")


# ---- the CLI: the argparse parser ------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.items())
    return found


def _option_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = action.metavar or action.dest
        if action.choices and not isinstance(action.choices, dict):
            name += " {" + ",".join(str(choice) for choice in action.choices) + "}"
        if action.required or not action.option_strings:
            default = "*required*"
        elif action.default in (None, False, argparse.SUPPRESS):
            default = ""
        else:
            default = code(action.default)
        rows.append([code(name), default, cell(action.help or "")])
    return rows


def _command_section(path: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} {code(path)}", ""]
    if parser.description:
        lines += [cell(parser.description), ""]
    lines += ["```text", parser.format_usage().strip().removeprefix("usage: "), "```", ""]
    rows = _option_rows(parser)
    if rows:
        lines += table(["option", "default", "what"], rows)
    for name, sub in _subcommands(parser):
        lines += _command_section(f"{path} {name}", sub, min(level + 1, 4))
    return lines


def cli_reference() -> str:
    from reconciler.cli.main import build_parser

    parser = build_parser()
    parser.prog = "reconcile"
    lines = [f"### {code('reconcile')} (one pass)", ""]
    if parser.description:
        lines += [cell(parser.description), ""]
    lines += ["```text", parser.format_usage().strip().removeprefix("usage: "), "```", ""]
    lines += table(["option", "default", "what"], _option_rows(parser))
    if parser.epilog:
        lines += [cell(parser.epilog), ""]
    for name, sub in _subcommands(parser):
        lines += _command_section(f"reconcile {name}", sub, 3)
    return "\n".join(lines)


# ---- the REST API: the OpenAPI document -----------------------------------------------------------------------

METHODS = ("get", "put", "post", "patch", "delete")


def _parameter(spec: dict, components: dict) -> dict:
    if "$ref" in spec:
        return components.get("parameters", {}).get(spec["$ref"].rsplit("/", 1)[-1], spec)
    return spec


def _body_type(content: dict) -> str:
    parts = []
    for media, spec in content.items():
        schema = spec.get("schema", {})
        name = schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else schema.get("type", "")
        shown = f"[{name}](#{_anchor('api', name)})" if "$ref" in schema else code(name)
        parts.append(f"{code(media)}" + (f" ({shown})" if name else ""))
    return ", ".join(parts)


def api_reference() -> str:
    from reconciler.service.openapi import document

    doc = document()
    components = doc.get("components", {})
    base = doc.get("servers", [{}])[0].get("url", "")
    lines = [f"Base path: {code(base)}.  OpenAPI {doc.get('openapi')}, {cell(doc['info']['title'])}.", ""]
    if doc["info"].get("description"):
        lines += [cell(doc["info"]["description"]), ""]
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            operation: dict[str, Any] = item[method]
            lines += [f"### {code(method.upper() + ' ' + path)}", ""]
            if operation.get("summary"):
                lines += [cell(operation["summary"]), ""]
            if operation.get("description"):
                lines += [cell(operation["description"]), ""]
            parameters = [_parameter(p, components) for p in (*shared, *operation.get("parameters", []))]
            if parameters:
                rows = [
                    [
                        code(p.get("name", "")),
                        cell(p.get("in", "")),
                        "yes" if p.get("required") else "no",
                        cell(p.get("description", "")),
                    ]
                    for p in parameters
                ]
                lines += table(["parameter", "in", "required", "description"], rows)
            body = operation.get("requestBody")
            if body:
                lines += [f"Request body: {_body_type(body.get('content', {}))}.", ""]
            rows = [
                [code(status), cell(response.get("description", "")), _body_type(response.get("content", {}))]
                for status, response in sorted(operation.get("responses", {}).items())
            ]
            lines += table(["status", "meaning", "body"], rows)
    schemes = components.get("securitySchemes", {})
    if schemes:
        lines += ["## Authentication", ""]
        rows = [[code(name), cell(spec.get("description", ""))] for name, spec in schemes.items()]
        lines += table(["scheme", "what"], rows)
    lines += ["## Schemas", ""]
    lines += tables_of(
        sorted((name, sub, False) for name, sub in components.get("schemas", {}).items()), "api", api=True
    )
    return "\n".join(lines)


# ---- Sphinx ------------------------------------------------------------------------------------------------------

PAGES = {
    "classroom.md": classroom_reference,
    "site.md": site_reference,
    "cli.md": cli_reference,
    "rest-api.md": api_reference,
}


def generate(out: Path = OUT) -> list[Path]:
    """Write every generated page; a page whose text did not change is left alone (no needless rebuild)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in PAGES.items():
        path = out / name
        text = "<!-- generated by docs/_ext/refgen.py at build time: do not edit -->\n\n" + make().rstrip() + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _on_builder_inited(app) -> None:
    generate()


def setup(app) -> dict:
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
