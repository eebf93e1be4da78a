"""The one registry pattern shared by models, featurizers, poolings, optimizers, schedulers and
losses (after timm's `register_model`)."""
import difflib
import inspect
from typing import Callable, Dict, List

from mser.errors import ConfigError


def nearest(name: str, choices) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_kwargs(target: Callable, kwargs: dict, where: str, supplied: tuple = ()) -> None:
    """Refuse keyword arguments that `target` does not take, naming the nearest valid one.
    `supplied` names arguments the caller fills in itself, left out of the list of valid keys."""
    params = inspect.signature(target).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"unknown key '{key}' in {where}{nearest(key, valid)}; "
                              f"valid keys: {', '.join(sorted(set(valid) - set(supplied)))}")


class Registry:
    """Maps a name to a class or factory; `build` checks the name and the keyword arguments."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, obj: Callable = None, *, name: str = None):
        """Use as `@registry.register` or `@registry.register(name='X')`."""
        def add(target):
            key = name or target.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = target
            return target
        return add(obj) if obj is not None else add

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'{nearest(name, self._entries)}; "
                              f"available: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, supplied: tuple = (), **kwargs):
        """Call the registered `name` with `kwargs`; `supplied` as in `check_kwargs`."""
        target = self.get(name)
        check_kwargs(target, kwargs, f"the arguments of {self.kind} '{name}'", supplied)
        return target(**kwargs)

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
