"""``python -m bot <command>``: train, serve, rasa-server, shell, validate, settings,
handoffs, workbench, notify."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the sub-command's own ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "train": "bot.train",
        "serve": "bot.serve",
        "rasa-server": "bot.rasa_server",
        "shell": "bot.shell",
        "validate": "bot.validate",
        "settings": "bot.settings",
        "handoffs": "bot.handoff_cli",
        "workbench": "bot.workbench.app",
        "notify": "bot.notify",
    }
    if not argv or argv[0] not in commands:
        print(f"usage: python -m bot {{{','.join(commands)}}} [options]", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(commands[argv[0]])
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
