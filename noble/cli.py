"""The `noble` command line: datagen | train | evaluate | sample | fit | serve | bench.

Each subpackage owns its commands in its own `cli.py`; this module only assembles them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="noble: synthetic neurons on demand.")

# (module, attribute, how to mount): "group" mounts a Typer sub-app, "commands" copies its commands to the top.
_PARTS = [
    ("noble.datagen.cli", "app", "group", "datagen"),
    ("noble.operator.cli", "app", "commands", None),
    ("noble.fit.cli", "app", "commands", None),
    ("noble.app.cli", "app", "commands", None),
]

for module_name, attr, how, name in _PARTS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a part not built yet
        if exc.name != module_name:
            raise
        continue
    sub = getattr(module, attr)
    if how == "group":
        app.add_typer(sub, name=name)
    else:
        for cmd in sub.registered_commands:
            app.registered_commands.append(cmd)


if __name__ == "__main__":
    app()
