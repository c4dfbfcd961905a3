"""The models of a twin: BehavioralModel entities in the graph, their definitions in the repo.

An entity names its definition file (`definition: models/battery-discharge.yaml`); the file
holds the structure (equations, network, states) and the parameters it was written with, and the
entity's `parameters` override them: a calibration lands new parameters as a mutation of the
entity, reviewed and versioned like any change, without rewriting the file. A model may also be
given as a path to a YAML file that no entity names yet (`mf sim run models/new.yaml`).
"""

from __future__ import annotations

from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim.definition import Loaded, load

ENTITY = "BehavioralModel"


class Catalog:
    def __init__(self, repo):
        self.repo = repo
        self._cache: dict[str, Loaded] = {}

    def entity(self, name: str) -> dict | None:
        node = self.repo.index.node(f"{ENTITY}:{name}")
        return None if node is None else {"version": node.version, "properties": node.props}

    def find(self, ref: str, relative_to: Loaded | None = None) -> Loaded:
        """A model by entity name (`battery-discharge`, `BehavioralModel:battery-discharge`) or path."""
        name = ref.removeprefix(f"{ENTITY}:")
        if name in self._cache:
            return self._cache[name]
        node = self.entity(name)
        if node is None:
            path = self._path(ref, relative_to)
            if path is None:
                raise BadInput(f"unknown model '{ref}'", "list them with `mf sim models`, or give a .yaml path")
            loaded = load(path, self._display(path))
            self._cache[name] = loaded
            return loaded
        props = node["properties"]
        if not props.get("definition"):
            raise BadInput(f"{ENTITY}:{name} has no definition file", f"`mf sim register models/{name}.yaml`")
        path = self.repo.root / props["definition"]
        loaded = load(path, props["definition"])
        if loaded.definition.name != name:
            raise BadInput(f"{props['definition']}: name: '{loaded.definition.name}' but the entity is {ENTITY}:{name}")
        loaded.entity_version = node["version"]
        loaded.definition = _with_entity_parameters(loaded, props.get("parameters") or {}, name)
        self._cache[name] = loaded
        return loaded

    def _path(self, ref: str, relative_to: Loaded | None) -> Path | None:
        candidates = [Path(ref)]
        if relative_to is not None and relative_to.path is not None:
            candidates.insert(0, relative_to.path.parent / f"{ref}.yaml")
            candidates.insert(1, relative_to.path.parent / ref)
        candidates.append(self.repo.root / ref)
        for c in candidates:
            if c.suffix in (".yaml", ".yml") and c.is_file():
                return c
        return None

    def _display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.repo.root.resolve()))
        except ValueError:
            return str(path)

    def models(self) -> list[dict]:
        out = []
        for node in self.repo.index.nodes_of_type(ENTITY):  # id order is name order: one prefix
            name, props = node.id.split(":", 1)[1], node.props
            entry = {"name": name, "version": node.version, "model_type": props.get("model_type"),
                     "definition": props.get("definition"), "calibration_source": props.get("calibration_source"),
                     "ok": True, "error": None}
            try:
                self.find(name)
            except BadInput as exc:
                entry.update(ok=False, error=exc.message)
            out.append(entry)
        return out

    def composition_of(self, twin_model: str) -> str:
        """The composition a TwinModel is MODELED_BY (what a what-if runs for its devices)."""
        found = [dst for dst, kind in self.repo.index.targets_with_prop(twin_model, "MODELED_BY", "model_type")
                 if kind == "composition"]
        if not found:
            raise BadInput(f"{twin_model} is MODELED_BY no composition",
                           f"link one: mf mutate link {twin_model} MODELED_BY BehavioralModel:NAME")
        return found[0].split(":", 1)[1]

    def limit(self, ref: str) -> tuple[float, str]:
        """`BOMItem:U1.max_temp` → (85, "degC"), read from the graph."""
        entity, _, prop = ref.rpartition(".")
        props = self.repo.index.props(entity)
        if props is None:
            raise BadInput(f"margin limit {ref}: {entity} does not exist")
        value = props.get(prop)
        if isinstance(value, dict) and "value" in value:
            return float(value["value"]), value.get("unit") or ""
        if isinstance(value, (int, float)):
            return float(value), ""
        raise BadInput(f"margin limit {ref}: {entity} has no {prop}")


def _with_entity_parameters(loaded: Loaded, params: dict, name: str):
    """The definition with the entity's parameters over the file's (each must be one of them)."""
    from metaforge.sim.params import flatten, unflatten

    if not params:
        return loaded.definition
    file_flat = flatten(loaded.definition.parameters)
    merged = dict(file_flat)
    for key, value in flatten(params).items():
        if key not in file_flat:
            raise BadInput(f"{ENTITY}:{name}: parameter '{key}' is not in {loaded.display}",
                           "remove it from the entity, or add it to the definition")
        merged[key] = value
    return loaded.definition.model_copy(update={"parameters": unflatten(merged)})


def entity_props(loaded: Loaded, definition_path: str) -> dict:
    """The BehavioralModel properties that mirror a definition file."""
    d = loaded.definition
    props = {"model_type": d.model_type, "domain": d.domain or "", "definition": definition_path,
             "inputs": [p.name for p in d.inputs], "outputs": [p.name for p in d.outputs],
             "parameters": d.parameters, "valid_range": {k: list(v) for k, v in d.valid_range.items()}}
    if d.calibration_source:
        props["calibration_source"] = d.calibration_source
    if d.description:
        props["description"] = d.description
    return props
