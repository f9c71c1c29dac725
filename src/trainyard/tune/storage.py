"""Where a study lives, and recovering trials that a killed worker left behind.

Storage URLs:

* none given: SQLite in ``<out>/study.db`` (rerun with the same ``--study`` and ``--out`` to resume);
* ``sqlite:///path/study.db``, ``postgresql://...``, ``mysql://...``: an Optuna RDB storage;
* ``journal:PATH``: an Optuna journal file (``JournalFileBackend``), shared by processes that see
  the same file system; no database server needed.

Many machines work on one study by pointing at the same storage and study name::

    # once, on the database host: createdb trainyard
    # then on every machine; together the workers finish --trials trials in total, not per machine
    trainyard tune data.csv --target y --trials 200 --study churn-v1 \\
        --storage postgresql://tuner:SECRET@db.internal:5432/trainyard

PostgreSQL needs a driver on every worker (``pip install psycopg2-binary``). RDB workers send a
heartbeat every 30 s; a trial whose worker has been silent for 2 minutes is marked failed and
retried once by the next worker. A trial orphaned on this machine (its process is gone) is failed
and re-enqueued at once when ``tune`` starts again. Each worker writes its trial directories and
outputs under its own ``--out``; the study (and so ``best.json``) is the same for all.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import socket
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError

HEARTBEAT_S = 30
GRACE_S = 120
MAX_RETRIES = 2


def mask(url: str) -> str:
    """The URL without its password (for files and messages)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(url: str | None, out: Path) -> tuple[Any, str]:
    """(Optuna storage, URL to show) for ``url``; the default is SQLite in ``out/study.db``."""
    import optuna

    if url is None:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    url = str(url)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):].removeprefix("//")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path))), f"journal:{path.resolve()}"
    if not re.match(r"^(sqlite|postgresql|postgres|mysql|mariadb)(\+\w+)?://", url):
        raise ConfigError(f"--storage {mask(url)!r}: use sqlite:///FILE, postgresql://USER@HOST/DB, "
                          f"mysql://USER@HOST/DB or journal:FILE")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several local workers share one SQLite file: wait for the lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 60}}
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # the heartbeat arguments are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=_stale_retry())
    except ImportError as e:
        raise ConfigError(f"--storage {mask(url)}: the database driver is not installed ({e}); "
                          f"for PostgreSQL: pip install psycopg2-binary") from None
    except Exception as e:  # sqlalchemy raises many types; to the user they all mean "cannot open"
        raise ConfigError(f"--storage {mask(url)}: cannot open ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from None
    return storage, mask(url)


def _stale_retry():
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback
        return cls(max_retry=1)


def worker_id() -> dict[str, Any]:
    """This process as a trial's owner: host, pid and the pid's start time (pids are reused)."""
    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _alive(worker: dict[str, Any]) -> bool:
    import psutil

    try:
        p = psutil.Process(int(worker["pid"]))
        return abs(p.create_time() - float(worker.get("started", p.create_time()))) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError, TypeError):
        return False


def _age_s(trial: Any) -> float:
    start = trial.datetime_start
    if start is None:
        return 0.0
    now = _dt.datetime.now(start.tzinfo) if start.tzinfo else _dt.datetime.now()
    return (now - start).total_seconds()


def recover_orphans(study: Any) -> list[int]:
    """Fail the RUNNING trials whose worker on this machine is gone (or that never recorded one),
    and re-enqueue them, and the trials a Ctrl-C interrupted, with the same parameters.

    Returns the numbers of the trials re-enqueued.
    """
    from optuna.trial import TrialState

    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials} | {t.system_attrs.get("failed_trial") for t in trials}
    requeue = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            w = t.user_attrs.get("worker")
            orphan = (not _alive(w)) if (w and w.get("host") == host) else (w is None and _age_s(t) > GRACE_S)
            if not orphan:
                continue
            try:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # another worker recovered it first
                continue
            requeue.append(t)
        elif t.state == TrialState.FAIL and t.user_attrs.get("interrupted"):
            requeue.append(t)
    out = []
    for t in requeue:
        if t.number in retried or int(t.user_attrs.get("retries", 0)) >= MAX_RETRIES or not t.params:
            continue
        attrs = {"retry_of": t.number, "retries": int(t.user_attrs.get("retries", 0)) + 1}
        if t.user_attrs.get("source"):
            attrs["source"] = t.user_attrs["source"]
        study.enqueue_trial(dict(t.params), user_attrs=attrs)
        out.append(t.number)
    return out
