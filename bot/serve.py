"""Run everything the assistant needs on one machine: action server, Rasa server,
when RabbitMQ is configured the CRM event consumer, and when CRM_BACKEND names a remote
CRM the outbox worker that delivers to it.

If one of them stops, it is started again after a growing delay (1 s, 2 s, 4 s … at most
30 s; bot/supervisor.py) while the others keep running, so a crashed action server does
not take every channel down; the log says which one stopped, how, and when it restarts.
Ctrl-C or SIGTERM stops all of them. In production run each part as its own service
(docs/operations.md, "Keeping it running").
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot import log_redaction
from bot import settings as bot_settings
from bot.settings import PROJECT_ROOT
from bot.supervisor import Supervisor
from bot.train import train_if_needed


def child_commands(settings: bot_settings.Settings, model: Path) -> dict[str, list[str]]:
    """The processes to supervise, by name."""
    python = sys.executable
    commands = {
        "actions": [
            python,
            "-m",
            "rasa_sdk",
            "--actions",
            "actions",
            "--port",
            str(settings.action_port),
        ],
        "rasa": [python, "-m", "bot", "rasa-server", "--model", str(model)],
    }
    if settings.rabbitmq_url:
        commands["consumer"] = [python, "-m", "crm_bridge.consumer"]
    if settings.crm.crm_backend != "sql":
        # Delivers the outbox to the remote CRM, outside every request (crm_bridge.outbox).
        commands["outbox"] = [python, "-m", "crm_bridge", "outbox", "run"]
    return commands


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run the commands until Ctrl-C or SIGTERM, restarting any that stops; returns 0."""
    supervisor = Supervisor(commands, env, PROJECT_ROOT)
    supervisor.handle_stop_signals()
    return supervisor.run()


def promoted_model(models_dir: Path) -> Path | None:
    """The model promoted in the workbench (``models_dir/serving.json``), if it still exists."""
    from bot.workbench.promotion import read_pointer

    pointer = read_pointer(models_dir)
    if pointer is None:
        return None
    model = models_dir / pointer.current
    if not model.is_file():
        print(
            f"serve: the promoted model {model.name} is missing; serving the current one",
            file=sys.stderr,
        )
        return None
    print(f"serve: serving {model.name}, the model promoted in the workbench (serving.json)")
    return model


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot serve [--no-train] [--model PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bot serve", description=__doc__)
    parser.add_argument("--model", type=Path, help="serve this model instead of the current one")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training")
    args = parser.parse_args(argv)

    settings = bot_settings.current()
    try:
        settings.validate()
    except bot_settings.SettingsError as error:
        print(f"serve: {error}", file=sys.stderr)
        return 2
    model = args.model or promoted_model(settings.models_dir)
    if model is None:
        if args.no_train:
            from bot.train import model_path_for

            model = model_path_for(settings.models_dir)
            if not model.exists():
                print(f"serve: no model {model.name}; run `make train`", file=sys.stderr)
                return 2
        else:
            model = train_if_needed(settings.models_dir)

    # The supervisor's restarts are logged; secrets never are (belt and braces: it logs
    # names and exit codes only, and the redacting filter guards the handler).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(levelname)s %(message)s")
    log_redaction.install(settings)
    base = f"http://{settings.rasa_interface}:{settings.rasa_port}"
    print(
        f"\nRapport is starting.\n"
        f"  Talk to it:    make shell   (or POST {base}/webhooks/rest/webhook)\n"
        f"  CRM timeline:  python -m crm_bridge show-contact alice@example.com\n",
        flush=True,
    )
    return supervise(child_commands(settings, model), bot_settings.child_environment(settings))
