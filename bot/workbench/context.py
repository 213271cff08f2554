"""The workbench's collaborators, built once per process from the settings."""

from __future__ import annotations

import dataclasses
import functools
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from bot import settings as bot_settings
from bot.workbench.security import LoginThrottle, SessionSigner, load_secret
from crm_bridge import users
from crm_bridge.db import session_factory
from crm_bridge.users import WorkbenchAccount

# Below this confidence a message goes to the inbox when config.yml names no threshold.
DEFAULT_FALLBACK_THRESHOLD = 0.3
# The inbox groups this many of the newest waiting messages (a page, not the backlog).
INBOX_ITEMS_GROUPED = 300


@dataclasses.dataclass
class Workbench:
    """Everything a page needs: settings, the CRM, the data files, jobs and models."""

    settings: bot_settings.Settings
    crm: sessionmaker
    signer: SessionSigner
    throttle: LoginThrottle
    root: Path
    models_dir: Path
    work_dir: Path
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _encoder: Any = dataclasses.field(default=None, repr=False)

    def find_account(self, account_id: int) -> WorkbenchAccount | None:
        """The enabled account a session names (None when gone or disabled)."""
        return users.find_account(self.crm, account_id)

    @functools.cached_property
    def training_data(self) -> Any:
        """The NLU files and domain under the project root (``TrainingData``)."""
        from bot.workbench.training_data import TrainingData

        return TrainingData(self.root)

    @functools.cached_property
    def inbox(self) -> Any:
        """Messages the bot was unsure about (``crm_bridge.inbox.Inbox``)."""
        from crm_bridge.inbox import Inbox

        return Inbox(self.crm)

    @functools.cached_property
    def jobs(self) -> Any:
        """The background training and evaluation run (``TrainingJobs``)."""
        from bot.workbench.jobs import TrainingJobs

        return TrainingJobs(self.root, self.models_dir, self.work_dir, golden_dir=self.golden_dir)

    @functools.cached_property
    def registry(self) -> Any:
        """Which model serves, its promotions and rollbacks (``ModelRegistry``)."""
        from bot.workbench.promotion import ModelRegistry

        return ModelRegistry(
            self.models_dir, self.crm, self.settings.rasa_url, self.settings.api_token
        )

    def encoder(self) -> Any:
        """The sentence encoder that groups inbox messages (loaded on first use)."""
        with self._lock:
            if self._encoder is None:
                from bot.workbench.clustering import MiniLmEncoder

                self._encoder = MiniLmEncoder()
            return self._encoder

    @functools.cached_property
    def _tracker_store(self) -> Any:
        from bot.workbench.golden import open_tracker_store

        return open_tracker_store(self.root / "domain.yml")

    def tracker_store(self) -> Any:
        """Rasa's tracker store, where golden conversations come from (opened on first use)."""
        with self._lock:
            return self._tracker_store

    @property
    def golden_dir(self) -> Path:
        """Where golden conversations (Rasa test stories) are kept in the project."""
        return self.root / "tests" / "golden"

    def golden_names(self) -> list[str]:
        """The golden conversations' names."""
        from bot.workbench.golden import list_golden

        return list(list_golden(self.golden_dir))

    def evaluation_of(self, model_name: str | None) -> Any:
        """The stored evaluation of a model in models_dir (None when it has none)."""
        if not model_name:
            return None
        from bot.workbench.evaluation import EvaluationReport, evaluation_path_for

        path = evaluation_path_for(self.models_dir / model_name)
        return EvaluationReport.load(path) if path.exists() else None

    def latest_evaluation(self) -> Any:
        """The serving model's evaluation, else the newest one (None before any)."""
        serving = self.evaluation_of(self.registry.serving())
        if serving is not None:
            return serving
        reports = sorted(
            self.models_dir.glob("*.evaluation.json"), key=lambda path: path.stat().st_mtime
        )
        if not reports:
            return None
        from bot.workbench.evaluation import EvaluationReport

        return EvaluationReport.load(reports[-1])

    def inbox_groups(self, limit: int = INBOX_ITEMS_GROUPED) -> list[Any]:
        """The newest waiting inbox messages, grouped by meaning (blocking: SQL, encoder)."""
        from bot.workbench.clustering import group_items

        items = self.inbox.items(limit, threshold=self.fallback_threshold())
        if not items:
            return []
        return list(group_items(items, self.encoder()))

    def fallback_threshold(self) -> float:
        """The FallbackClassifier threshold of the project's config.yml."""
        from ruamel.yaml import YAML

        config = YAML(typ="safe").load((self.root / "config.yml").read_text()) or {}
        for component in config.get("pipeline") or []:
            if component.get("name") == "FallbackClassifier":
                return float(component.get("threshold", DEFAULT_FALLBACK_THRESHOLD))
        return DEFAULT_FALLBACK_THRESHOLD


def build_workbench(settings: bot_settings.Settings) -> Workbench:
    """The workbench for these settings (the CRM database, the project, the models)."""
    var_dir = settings.crm.var_dir
    return Workbench(
        settings=settings,
        crm=session_factory(settings.crm.database_url),
        signer=SessionSigner(
            load_secret(settings.workbench_secret, var_dir),
            settings.workbench_session_hours * 3600,
        ),
        throttle=LoginThrottle(),
        root=settings.workbench_project_dir,
        models_dir=settings.models_dir,
        work_dir=var_dir / "workbench",
    )
