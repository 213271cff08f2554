"""Run the Rasa server in this process with Rapport's settings.

Starting Rasa from Python (instead of ``rasa run --auth-token ...``) keeps the API
token and JWT secret out of the process list, and refuses an enabled HTTP API that
has no authentication.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bot import log_redaction
from bot import settings as bot_settings
from bot.settings import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot rasa-server --model PATH``."""
    parser = argparse.ArgumentParser(prog="python -m bot rasa-server")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--endpoints", type=Path, default=PROJECT_ROOT / "endpoints.yml")
    parser.add_argument("--credentials", type=Path, default=PROJECT_ROOT / "credentials.yml")
    args = parser.parse_args(argv)

    settings = bot_settings.current()
    settings.validate()
    bot_settings.export_for_rasa(settings)

    import rasa.core.run
    import rasa.utils.tensorflow.environment as tf_env
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # The same start-up as `rasa run`.
    level = logging.getLevelName(settings.log_level)
    if not isinstance(level, int):
        level = logging.INFO
    configure_logging_and_warnings(level, warn_only_once=True, filter_repeated_logs=True)
    tf_env.setup_tf_environment()
    configure_structlog(level)
    log_redaction.install(settings)
    endpoints = AvailableEndpoints.read_endpoints(str(args.endpoints))
    from bot import rasa_patches

    rasa_patches.install()
    if endpoints.action is not None:
        from bot.action_endpoint import ActionServerEndpoint

        endpoints.action = ActionServerEndpoint.replacing(
            endpoints.action, settings.action_timeout_seconds
        )
    rasa.core.run.serve_application(
        model_path=str(args.model),
        interface=settings.rasa_interface,
        port=settings.rasa_port,
        credentials=str(args.credentials),
        cors=None,
        enable_api=settings.api_enabled,
        auth_token=settings.api_token or None,
        jwt_secret=settings.jwt_secret or None,
        jwt_method="HS256",
        endpoints=endpoints,
    )
    return 0
