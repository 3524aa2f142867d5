"""Model registry: the `champion` alias, promotion with a recorded predecessor, rollback.

Serving loads `models:/<name>@champion`, so moving that alias is the whole deployment. It is
the last step, one database write: until it happens the previous champion is served, whole.
Promotion writes the previous champion's version into a tag on the new one, which makes
rollback a walk back along that chain; no version is ever deleted. Each version carries its
evaluation metrics as tags (`ft_pipeline.metric.<name>`) so a gate can compare a candidate
with the champion without reading the run that produced it.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ft_pipeline.lib.state.atomic import crash_point

CHAMPION = "champion"
PREVIOUS_TAG = "ft_pipeline.previous_champion"
METRIC_TAG_PREFIX = "ft_pipeline.metric."
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (no champion, nothing to roll back to)."""


def client_for(client: MlflowClient | str | None = None) -> MlflowClient:
    """An MlflowClient: the one given, one for a tracking URI, or the default one."""
    if isinstance(client, MlflowClient):
        return client
    return MlflowClient(tracking_uri=client)


def champion(client: MlflowClient | str | None, name: str) -> ModelVersion | None:
    """The version holding the `champion` alias; None when the model or alias is missing."""
    client = client_for(client)
    # Not get_model_version_by_alias: for a missing alias the SQL store raises
    # INVALID_PARAMETER_VALUE, the same code as for a malformed name.
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == _NOT_FOUND:
            return None
        raise
    version = (model.aliases or {}).get(CHAMPION)
    return None if version is None else client.get_model_version(name, str(version))


def promote(client: MlflowClient | str | None, name: str, version: str | int) -> str | None:
    """Move `champion` to `version`; return the previous champion's version (or None).

    The previous version is recorded in the new champion's `ft_pipeline.previous_champion`
    tag (so `rollback` can undo this) and stays registered. Promoting the current champion
    again changes nothing and returns the predecessor it already records.
    """
    client = client_for(client)
    version = str(version)
    client.get_model_version(name, version)  # fail early, naming the version, if absent
    current = champion(client, name)
    previous = str(current.version) if current is not None else None
    if previous == version:
        return current.tags.get(PREVIOUS_TAG) or None
    if previous is not None:
        client.set_model_version_tag(name, version, PREVIOUS_TAG, previous)
    else:
        _clear_previous(client, name, version)
    crash_point("promote.alias")
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous


def rollback(client: MlflowClient | str | None, name: str) -> tuple[str, str]:
    """Move `champion` back to the version it replaced; return (from_version, to_version)."""
    client = client_for(client)
    current = champion(client, name)
    if current is None:
        raise RegistryError(f"model {name!r} has no {CHAMPION!r} alias: nothing to roll back")
    target = current.tags.get(PREVIOUS_TAG)
    if not target:
        raise RegistryError(
            f"model {name!r}: champion version {current.version} has no previous champion "
            f"recorded (tag {PREVIOUS_TAG!r}); nothing to roll back to"
        )
    try:
        client.get_model_version(name, target)
    except MlflowException as exc:
        raise RegistryError(
            f"model {name!r}: previous champion version {target} is no longer registered"
        ) from exc
    client.set_registered_model_alias(name, CHAMPION, target)
    return str(current.version), target


def champion_metrics(client: MlflowClient | str | None, name: str) -> dict[str, float]:
    """The champion's metrics from its `ft_pipeline.metric.*` tags ({} without a champion)."""
    current = champion(client, name)
    if current is None:
        return {}
    return version_metrics(current)


def version_metrics(version: ModelVersion) -> dict[str, float]:
    """The metrics a version was tagged with at registration."""
    return {
        key.removeprefix(METRIC_TAG_PREFIX): float(value)
        for key, value in (version.tags or {}).items()
        if key.startswith(METRIC_TAG_PREFIX)
    }


def _clear_previous(client: MlflowClient, name: str, version: str) -> None:
    """Drop a stale previous-champion tag (a version promoted again after a rollback)."""
    if PREVIOUS_TAG in (client.get_model_version(name, version).tags or {}):
        client.delete_model_version_tag(name, version, PREVIOUS_TAG)
