"""params.yaml: loading, validation against the workflow schema, per-experiment views."""
from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import os
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .errors import InputError

#: The params schema ships with the package (``workflow/schemas/params.schema.yaml`` links to it): validation and
#: defaults work from any install, not only from this checkout.
SCHEMA = Path(__file__).resolve().parent / "schemas" / "params.schema.yaml"


def load_params(path: str | Path = "params.yaml", *, validate: bool = True) -> dict[str, Any]:
    """Read a params file; by default validate it and fill every default (:func:`resolve_params`)."""
    import yaml

    p = Path(path)
    try:
        params = yaml.load(p.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise InputError(p, "no such file") from None
    except yaml.YAMLError as exc:
        raise InputError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise InputError(p, "expected a mapping at the top level")
    if validate:
        try:
            return resolve_params(params, source=p)
        except InputError as exc:  # name the line that holds the key
            where = key_location([p], exc.key) if getattr(exc, "key", None) else None
            if where is None:
                raise
            raise _keyed(InputError(where, exc.reason), exc.key) from None
    return params


def _fill(instance: Any, node: dict[str, Any]) -> None:
    """Fill the ``default`` of every missing key the schema ``node`` declares under ``properties`` (following
    ``properties`` only, never a ``$ref``: an experiment's own ``train`` block overrides the global one and gets no
    defaults of its own)."""
    if not isinstance(instance, dict):
        return
    for key, sub in (node.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill(instance[key], sub)


def resolve_params(params: dict[str, Any], *, source: str | Path = "params.yaml") -> dict[str, Any]:
    """``params`` validated, with every default filled, once: the schema's ``default`` values, then the two that
    follows from another setting (``run.seeds``: ``[train.seed]``; see also :func:`trial_epochs`).
    Returns a new dict; the library reads settings with ``[key]``, never with a default of its own."""
    validate_params(params, source=source)
    out = copy.deepcopy(params)
    _fill(out, _schema(SCHEMA, SCHEMA.stat().st_mtime_ns))
    out["run"].setdefault("seeds", [out["train"]["seed"]])
    unknown = sorted(set(out["tune"]["space"]) - set(out["train"]))
    if unknown:  # a searched setting overrides one of the train block's (TrainSettings.with_values)
        raise InputError(source, f"tune.space names '{unknown[0]}', which is not a train setting "
                                 f"(known: {', '.join(sorted(out['train']))})")
    schema = _schema(SCHEMA, SCHEMA.stat().st_mtime_ns)
    for name, exp in out["experiments"].items():
        exp.setdefault("class_names", [f"class{i}" for i in range(exp["classes"])])
        _fill(exp, schema["$defs"]["experiment"])  # preprocess and inference (an experiment's train: no defaults)
        if exp["dataset"] == "mri" and exp["preprocess"]["normalization"] != "fixed":
            raise InputError(source, f"experiments.{name}.preprocess.normalization: MRI keeps one scale per study "
                                     "(fixed), so that the enhancement ratio survives; zscore is for ultrasound")
        mirror = {**out["train"]["augment"], **(exp.get("train") or {}).get("augment", {})}["mirror"]
        if exp["dataset"] == "us" and "ud" in mirror:
            raise InputError(source, f"train.augment.mirror: {name} is ultrasound, whose depth has a direction "
                                     "(shadows fall below a mass): no up-down mirroring ('ud')")
        if exp["model"].get("deep_supervision") and exp["model"]["name"] != "dynunet":
            raise InputError(source, f"experiments.{name}.model.deep_supervision: only the dynunet network has "
                                     f"deep supervision, not {exp['model']['name']}")
    return out


@functools.lru_cache(maxsize=4)
def _schema(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The parsed schema, once per process (libyaml's loader when present: ~15x faster than pure Python)."""
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def validate_params(params: dict[str, Any], *, source: str | Path = "params.yaml", schema: Path = SCHEMA) -> None:
    """Raise InputError with one line naming the offending key when ``params`` breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema(schema, schema.stat().st_mtime_ns))
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = errors[0]
    path = [str(k) for k in err.absolute_path]
    key = ".".join(path) or "(top level)"
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        if extra:
            path = [*path, extra[0]]
            key = ".".join(path)
        near = difflib.get_close_matches(path[-1], known, n=1, cutoff=0.6) if extra else []
        hint = f" (did you mean '{'.'.join([*path[:-1], near[0]])}'?)" if near else ""
        raise _keyed(InputError(source, f"unknown key '{key}'{hint}"), path)
    raise _keyed(InputError(source, f"key '{key}': {err.message}"), path)


def _keyed(exc: InputError, path: list[str]) -> InputError:
    """``exc`` with the path of the offending key (``exc.key``), for :func:`key_location`."""
    exc.key = path
    return exc


def key_location(files: list[str | Path], path: list[str]) -> str | None:
    """``file:line`` where ``path`` (a key's path) is set, in the last of ``files`` that sets it (the last file
    wins, as for Snakemake's ``--configfile``); None when none of them does (a ``--config`` value)."""
    import yaml

    for f in reversed([Path(f) for f in files]):
        try:
            node = yaml.compose(f.read_text())
        except (OSError, yaml.YAMLError):
            continue
        line = None
        for k in path:
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            match = next(((kn, vn) for kn, vn in node.value if str(kn.value) == k), None)
            if match is None:
                node = None
                break
            line, node = match[0].start_mark.line + 1, match[1]
        if node is not None and line is not None:
            return f"{f}:{line}"
    return None


def schema_defaults(section: str, schema: Path = SCHEMA) -> dict[str, Any]:
    """The ``default:`` values the schema declares for the keys of one top-level section.

    The single source of defaults: the CLI and the library read them here, params.yaml repeats them.
    """
    out: dict[str, Any] = {}
    _fill(out, _schema(schema, schema.stat().st_mtime_ns)["properties"][section])  # nested blocks filled too
    return out


def us_map_settings(**given: Any) -> dict[str, Any]:
    """The four ``us_maps`` settings :func:`breastseg.us.maps.compute_maps` takes: the schema's defaults under
    ``given`` (for a script or a notebook; the workflow reads them from params)."""
    unknown = sorted(set(given) - set(schema_defaults("us_maps")))
    if unknown:
        raise TypeError(f"unknown us_maps setting '{unknown[0]}'")
    return {**schema_defaults("us_maps"), **given}


def selected_experiments(params: dict[str, Any], source: str | Path = "params.yaml") -> list[str]:
    """The experiments a run builds: ``run.experiments`` (checked against ``experiments``), else all of them."""
    chosen = (params.get("run") or {}).get("experiments")
    if not chosen:
        return list(params["experiments"])
    unknown = [e for e in chosen if e not in params["experiments"]]
    if unknown:
        raise InputError(source, f"run.experiments names '{unknown[0]}', which is not under 'experiments' "
                                   f"(known: {', '.join(params['experiments'])})")
    return list(chosen)


def experiment(params: dict[str, Any], name: str) -> Experiment:
    """One experiment's settings (of resolved params) with the global ``train`` block merged under its own
    overrides, and the ``us_maps`` settings for an ultrasound experiment."""
    try:
        block = params["experiments"][name]
    except KeyError:
        raise InputError("params.yaml", f"no experiment named '{name}'") from None
    own = block.get("train", {})
    train = {**params["train"], **own}
    if "augment" in own:  # a partial augment block overrides the global one transform by transform
        train["augment"] = {**params["train"]["augment"], **own["augment"]}
    maps = MapSettings.from_params(params) if block["dataset"] == "us" else None
    return Experiment.from_dict({**block, "name": name, "train": train}, maps=maps)


def trial_epochs(tune: TuneSettings, exp: Experiment) -> int:
    """Epochs per Optuna trial: ``tune.max_epochs``, else the experiment's own ``train.max_epochs``."""
    return int(tune.max_epochs if tune.max_epochs is not None else exp.train.max_epochs)


def tracking_only(path: str | Path) -> TrackingSettings | None:
    """The stores of a params file that names an MLflow store (read without validating the rest: a predict run
    only needs the store), else ``None``."""
    block = load_params(path, validate=False).get("tracking")
    if isinstance(block, dict) and block.get("mlflow_uri"):
        return TrackingSettings.from_params({"tracking": {"optuna_storage": "", **schema_defaults("tracking"), **block}})
    return None


def mlflow_uri(params: dict[str, Any]) -> str:
    """Tracking URI: $MLFLOW_TRACKING_URI wins over params.yaml."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params["tracking"]["mlflow_uri"]


# ------------------------------------------------------------------------------------------ typed settings
# Small frozen views of resolved params (every key filled): a stage takes the one it needs instead of the whole
# dict. Values are kept as params hold them (no conversion), so what is written from them stays the same.


@dataclass(frozen=True)
class MapSettings:
    """The ``us_maps`` settings: how ultrasound maps are made from the decoded scan."""

    dynamic_range_db: float
    window_pulses: float
    bins: int
    entropy_on: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MapSettings:
        return cls.from_dict(params["us_maps"])

    @classmethod
    def from_dict(cls, maps: Mapping[str, Any]) -> MapSettings:
        """Of a ``us_maps`` block with every key (an ``entropy_binning`` key, if any, is implied and ignored)."""
        return cls(dynamic_range_db=maps["dynamic_range_db"], window_pulses=maps["window_pulses"], bins=maps["bins"],
                   entropy_on=maps["entropy_on"])

    @property
    def entropy_binning(self) -> str:
        """The entropy binning these settings imply (:data:`breastseg.us.maps.ENTROPY_BINNING`)."""
        from .us.maps import ENTROPY_BINNING

        return ENTROPY_BINNING[self.entropy_on]

    def as_dict(self) -> dict[str, Any]:
        """The four settings and the entropy binning they imply (what a model bundle records)."""
        return {"dynamic_range_db": self.dynamic_range_db, "window_pulses": self.window_pulses, "bins": self.bins,
                "entropy_on": self.entropy_on, "entropy_binning": self.entropy_binning}


@dataclass(frozen=True)
class TrackingSettings:
    """The ``tracking`` stores; ``mlflow_uri`` is the one in force (:func:`mlflow_uri`: $MLFLOW_TRACKING_URI wins)."""

    mlflow_uri: str
    artifact_root: str
    optuna_storage: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrackingSettings:
        block = params["tracking"]
        return cls(mlflow_uri=mlflow_uri(params), artifact_root=block["artifact_root"],
                   optuna_storage=block["optuna_storage"])


@dataclass(frozen=True)
class SplitFractions:
    """Shares of the patients per subset (relative: they are normalised by their sum)."""

    train: float
    val: float
    test: float

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class SplitSettings:
    """The ``split`` settings: the seed and fractions patients are assigned to subsets with."""

    seed: int
    fractions: SplitFractions

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SplitSettings:
        block = params["split"]
        fr = block["fractions"]
        return cls(seed=block["seed"], fractions=SplitFractions(train=fr["train"], val=fr["val"], test=fr["test"]))


def _plain(value: Any) -> Any:
    """Tuples as lists and read-only mappings as dicts (how params hold them), recursively: what is hashed or
    written stays as before."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _frozen(value: Any) -> Any:
    """Lists as tuples and dicts as read-only mappings, recursively."""
    if isinstance(value, (tuple, list)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


class Section:
    """A frozen view of one top-level section of resolved params (``SECTION``): one field per schema key, filled
    from the schema's defaults by :func:`resolve_params` (a key the schema gives no default and params leave out
    is None)."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]):
        return cls.from_dict(params[cls.SECTION])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        return cls(**{f.name: _frozen(d.get(f.name)) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class CohortSettings(Section):
    """``cohort``: where the raw data is and how patients are named."""

    SECTION: ClassVar[str] = "cohort"
    name: str
    root: str
    pseudonym_key_file: str | None
    public: bool
    patient_map: str | None
    label_map: Mapping[str, int] | None


@dataclass(frozen=True)
class RunSettings(Section):
    """``run``: which experiments, seeds and folds a run builds."""

    SECTION: ClassVar[str] = "run"
    experiments: tuple[str, ...] | None
    seeds: tuple[int, ...]
    folds: int


@dataclass(frozen=True)
class SynthSettings(Section):
    """``synth``: the demo cohort's phantoms."""

    SECTION: ClassVar[str] = "synth"
    patients: int
    seed: int
    mri_matrix: int
    mri_slices: int
    mri_spacing_mm: float
    mri_slice_mm: float
    mri_post_phases: int
    workers: int
    us_lines: int
    us_depth_mm: float
    annotated_fraction: float


@dataclass(frozen=True)
class ConvertSettings(Section):
    """``convert``: what conversion does with a bad file, and how many shards it works in."""

    SECTION: ClassVar[str] = "convert"
    on_error: str
    shards: int


@dataclass(frozen=True)
class TuneSettings(Section):
    """``tune``: the Optuna study (``max_epochs`` None: the experiment's own ``train.max_epochs``)."""

    SECTION: ClassVar[str] = "tune"
    n_trials: int
    workers: int
    max_epochs: int | None
    pruner: str
    space: Mapping[str, Any]


@dataclass(frozen=True)
class EvaluationSettings(Section):
    """``evaluation``: the bootstrap seed, the BPE categories and the comparisons."""

    SECTION: ClassVar[str] = "evaluation"
    seed: int
    bpe_cutoffs: tuple[float, ...]
    bpe_degree: Mapping[str, Any]
    comparisons: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class SuggestSettings(Section):
    """``suggest``: how the annotation worklist is chosen."""

    SECTION: ClassVar[str] = "suggest"
    strategy: str
    budget: int
    min_slice_gap: int
    mc_passes: int
    seed: int
    montage: int


@dataclass(frozen=True)
class RegisterSettings(Section):
    """``register``: the metric checkpoints and the champion gate select on, and the gate's margin."""

    SECTION: ClassVar[str] = "register"
    metric: str
    margin: float


@dataclass(frozen=True)
class AugRange:
    """One augmentation: applied with probability ``p``, its parameter drawn uniformly in [``low``, ``high``]."""

    p: float
    low: float
    high: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AugRange:
        return cls(p=d["p"], low=d["low"], high=d["high"])

    def as_dict(self) -> dict[str, Any]:
        return {"p": self.p, "low": self.low, "high": self.high}


#: The transforms of ``train.augment`` besides mirroring, in the order they are applied.
AUGMENTATIONS = ("rotate", "scale", "elastic", "gamma", "contrast", "brightness", "noise", "blur", "low_res")


@dataclass(frozen=True)
class Augment:
    """``train.augment``: the training-time augmentation (:mod:`breastseg.data.augment`)."""

    mirror: tuple[str, ...]
    rotate: AugRange
    scale: AugRange
    elastic: AugRange
    gamma: AugRange
    contrast: AugRange
    brightness: AugRange
    noise: AugRange
    blur: AugRange
    low_res: AugRange

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Augment:
        return cls(mirror=tuple(d["mirror"]),
                   **{k: d[k] if isinstance(d[k], AugRange) else AugRange.from_dict(d[k]) for k in AUGMENTATIONS})

    def as_dict(self) -> dict[str, Any]:
        return {"mirror": list(self.mirror), **{k: getattr(self, k).as_dict() for k in AUGMENTATIONS}}


@dataclass(frozen=True)
class TrainSettings:
    """An experiment's ``train`` block (the global one under the experiment's own overrides), every key filled."""

    seed: int
    max_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    precision: str
    accelerator: str
    devices: int | str
    num_workers: int
    threads: int
    strategy: str
    num_nodes: int
    gradient_clip_val: float
    early_stopping_patience: int
    init_from: str
    samples_per_epoch: int
    class_weights: tuple[float, ...] | None
    optimizer: str
    schedule: str
    momentum: float
    augment: Augment

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str | Path = "params.yaml") -> TrainSettings:
        """Of a resolved ``train`` block; a missing or unknown key is refused in one line."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        missing = [k for k in names if k not in d]
        if unknown or missing:
            what = f"unknown train key '{unknown[0]}'" if unknown else f"train.{missing[0]} is not set"
            raise InputError(source, what)
        values = {k: d[k] for k in names}
        values["augment"] = d["augment"] if isinstance(d["augment"], Augment) else Augment.from_dict(d["augment"])
        values["class_weights"] = None if d["class_weights"] is None else tuple(d["class_weights"])
        return cls(**values)

    def with_values(self, values: Mapping[str, Any], *, source: str | Path = "params.yaml") -> TrainSettings:
        """These settings with ``values`` (e.g. a study's best parameters, a seed) in place of their own."""
        return TrainSettings.from_dict({**self.as_dict(), **values}, source=source)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["augment"] = self.augment.as_dict()
        out["class_weights"] = _plain(self.class_weights)
        return out


@dataclass(frozen=True)
class ModelSettings:
    """An experiment's ``model`` block: the network."""

    name: str
    features: tuple[int, ...]
    dropout: float | None = None
    deep_supervision: bool | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSettings:
        return cls(name=d["name"], features=tuple(d["features"]), dropout=d.get("dropout"),
                   deep_supervision=d.get("deep_supervision"))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "features": list(self.features)}
        if self.dropout is not None:
            out["dropout"] = self.dropout
        if self.deep_supervision is not None:
            out["deep_supervision"] = self.deep_supervision
        return out


@dataclass(frozen=True)
class Preprocess:
    """An experiment's ``preprocess`` block: how an image becomes the network's input (:mod:`breastseg.data.slices`)."""

    aspect: str
    normalization: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        return cls(aspect=d["aspect"], normalization=d["normalization"])

    @classmethod
    def legacy(cls, dataset: str) -> Preprocess:
        """What models trained before the setting existed did: MRI slices squeezed, ultrasound aspect kept."""
        return cls(aspect="squeeze" if dataset == "mri" else "keep", normalization="fixed")

    def as_dict(self) -> dict[str, Any]:
        return {"aspect": self.aspect, "normalization": self.normalization}


@dataclass(frozen=True)
class InferenceSettings:
    """An experiment's ``inference`` block: what follows the forward pass in evaluation and predict
    (:mod:`breastseg.models.segment`). In params a value may be ``auto`` (chosen on validation after training); a
    model bundle records the chosen values and the mirroring axes (``mirror``: empty without test-time mirroring)."""

    tta: bool
    keep_largest: bool | str
    min_component: float | str
    empty_below: float | str
    mirror: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InferenceSettings:
        return cls(tta=d["tta"], keep_largest=d["keep_largest"], min_component=d["min_component"],
                   empty_below=d["empty_below"], mirror=tuple(d.get("mirror", ())))

    @classmethod
    def legacy(cls) -> InferenceSettings:
        """What models trained before the setting existed did: the argmax of one forward pass, nothing after it."""
        return cls(tta=False, keep_largest=False, min_component=0.0, empty_below=0.0)

    @property
    def auto(self) -> tuple[str, ...]:
        """The post-processing settings still to be chosen on validation."""
        return tuple(k for k in ("keep_largest", "min_component", "empty_below") if getattr(self, k) == "auto")

    def as_dict(self) -> dict[str, Any]:
        return {"tta": self.tta, "keep_largest": self.keep_largest, "min_component": self.min_component,
                "empty_below": self.empty_below}


@dataclass(frozen=True)
class Experiment:
    """One experiment's resolved settings, what each stage reads: the data it is prepared from (``dataset``,
    ``channels``, ``image_size``), the labels (``classes``, ``class_names``), the network (``model``), the
    training (``train``: None for a model bundle's experiment, which records no training settings) and, for
    ultrasound, the maps (``maps``)."""

    name: str
    dataset: str
    channels: tuple[str, ...]
    classes: int
    class_names: tuple[str, ...]
    image_size: int
    model: ModelSettings
    train: TrainSettings | None = None
    maps: MapSettings | None = None
    preprocess: Preprocess | None = None
    inference: InferenceSettings | None = None

    def __post_init__(self) -> None:  # blocks a model bundle does not record: what models before them did
        if self.preprocess is None:
            object.__setattr__(self, "preprocess", Preprocess.legacy(self.dataset))
        if self.inference is None:
            object.__setattr__(self, "inference", InferenceSettings.legacy())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, maps: MapSettings | Mapping[str, Any] | None = None,
                  source: str | Path = "params.yaml") -> Experiment:
        """Of an experiment block with its ``name`` (and a complete ``train`` block, if any); ``maps``: the
        ``us_maps`` settings (an ultrasound experiment's)."""
        missing = [k for k in ("name", "dataset", "channels", "classes", "image_size", "model") if k not in d]
        if missing:
            raise InputError(source, f"experiment settings lack '{missing[0]}'")
        train = d.get("train")
        if maps is not None and not isinstance(maps, MapSettings):
            maps = MapSettings.from_dict(maps)
        return cls(
            name=d["name"], dataset=d["dataset"], channels=tuple(d["channels"]), classes=int(d["classes"]),
            class_names=tuple(d.get("class_names") or [f"class{i}" for i in range(d["classes"])]),
            image_size=d["image_size"],
            model=d["model"] if isinstance(d["model"], ModelSettings) else ModelSettings.from_dict(d["model"]),
            train=None if train is None else train if isinstance(train, TrainSettings)
            else TrainSettings.from_dict(train, source=source),
            maps=maps,
            preprocess=_typed(d.get("preprocess"), Preprocess),
            inference=_typed(d.get("inference"), InferenceSettings))

    def with_data(self, *, channels: tuple[str, ...] | list[str] | None = None,
                  image_size: int | None = None, preprocess: Preprocess | None = None) -> Experiment:
        """This experiment prepared another way (a model's own channels, image size or preprocessing)."""
        return replace(self, channels=self.channels if channels is None else tuple(channels),
                       image_size=self.image_size if image_size is None else image_size,
                       preprocess=self.preprocess if preprocess is None else preprocess)

    def settings(self) -> dict[str, Any]:
        """What a model bundle records of its experiment: everything but the training settings, maps and the
        inference block (the bundle records the chosen inference settings apart)."""
        return {"name": self.name, "dataset": self.dataset, "channels": list(self.channels),
                "image_size": self.image_size, "classes": self.classes, "class_names": list(self.class_names),
                "model": self.model.as_dict(), "preprocess": self.preprocess.as_dict()}

    def as_dict(self) -> dict[str, Any]:
        """The experiment as params hold it (with ``name`` and the merged ``train`` block): what is hashed."""
        out = self.settings()
        out["inference"] = self.inference.as_dict()
        if self.train is not None:
            out["train"] = self.train.as_dict()
        return out


def _typed(value: Any, cls: type) -> Any:
    """``value`` as ``cls`` (a dict is converted; None stays None: the class's legacy values apply)."""
    return value if value is None or isinstance(value, cls) else cls.from_dict(value)


def params_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (used to tag runs)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_effective_params(params: dict[str, Any], path: str | Path) -> str:
    """Write the configuration in force to ``path`` (only when it changed, so its mtime means something)."""
    import yaml

    from .io import atomic_path

    p = Path(path)
    text = yaml.safe_dump(params, sort_keys=True)
    if not p.exists() or p.read_text() != text:
        with atomic_path(p) as tmp:
            tmp.write_text(text)
    return str(p)


@dataclass(frozen=True)
class Settings:
    """Every section of resolved params as its typed, frozen object; ``experiments``: each experiment's merged
    settings (:func:`experiment`)."""

    cohort: CohortSettings
    run: RunSettings
    synth: SynthSettings
    convert: ConvertSettings
    us_maps: MapSettings
    tracking: TrackingSettings
    split: SplitSettings
    train: TrainSettings
    tune: TuneSettings
    evaluation: EvaluationSettings
    suggest: SuggestSettings
    register: RegisterSettings
    experiments: Mapping[str, Experiment]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        """Of resolved params (:func:`resolve_params`)."""
        return cls(cohort=CohortSettings.from_params(params), run=RunSettings.from_params(params),
                   synth=SynthSettings.from_params(params), convert=ConvertSettings.from_params(params),
                   us_maps=MapSettings.from_params(params), tracking=TrackingSettings.from_params(params),
                   split=SplitSettings.from_params(params), train=TrainSettings.from_dict(params["train"]),
                   tune=TuneSettings.from_params(params), evaluation=EvaluationSettings.from_params(params),
                   suggest=SuggestSettings.from_params(params), register=RegisterSettings.from_params(params),
                   experiments=MappingProxyType({name: experiment(params, name) for name in params["experiments"]}))
