"""Recipe validation errors as one line per bad field, naming the field and the fix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def format_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as `field 'a.b': what is wrong (got value)`; an unknown field
    lists the fields allowed where it stands."""
    loc = ".".join(str(p) for p in err["loc"]) or "<recipe>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent_model = _model_at(root, err["loc"][:-1])
        allowed = sorted(parent_model.model_fields) if parent_model else []
        return f"field '{loc}': unknown field; allowed fields here: {', '.join(allowed)}"
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict):
        return f"field '{loc}': {msg} (got {err['input']!r})"
    return f"field '{loc}': {msg}"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model
