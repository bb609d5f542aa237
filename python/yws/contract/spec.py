"""The feature contract: what the model reads, how missing values are treated, and the bands.

A spec is a YAML file. The default one ships with the package (``yws/specs/default.yaml``);
every command takes ``--spec PATH`` to use another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from yws.config import SettingsError, check_identifier
from yws.contract.features import (
    FEATURE_TYPES,
    IMPUTE_STRATEGIES,
    UNSEEN_POLICIES,
    FeatureType,
)
from yws.errors import YwsError

# LogisticRegression hyperparameters the spec and ``--param`` may set, with their types.
LR_PARAMS: dict[str, type] = {
    "regParam": float,
    "elasticNetParam": float,
    "standardization": bool,
    "maxIter": int,
    "tol": float,
    "fitIntercept": bool,
    "threshold": float,
}
PIPELINE_PARAMS: dict[str, type] = {"scaleFeatures": bool}
# Spark's maxIter is a JVM int; far below that, a fit would run for days. A seed is a JVM long.
MAX_ITER = 1_000_000
SEED_RANGE = (-(2**63), 2**63 - 1)


class SpecError(YwsError, ValueError):
    """The feature spec is malformed; the message names the field."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    nulls: str
    impute: str | None = None  # strategy, when nulls == "impute"
    unseen: str | None = None  # categoricals: policy for a category not seen in training

    @property
    def quarantine_nulls(self) -> bool:
        return self.nulls == "quarantine"

    @property
    def kind(self) -> FeatureType:
        return FEATURE_TYPES[self.type]


@dataclass(frozen=True)
class Bands:
    """Probability thresholds: ``p >= red`` is RED, ``p >= yellow`` is YELLOW, else GREEN.

    Written once as data: a probability's band is ``NAMES[level]``, its level the number of
    :attr:`thresholds` it reaches; each engine compiles that (Spark expressions, NumPy).
    """

    yellow: float
    red: float

    NAMES: ClassVar[tuple[str, ...]] = ("GREEN", "YELLOW", "RED")

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The probability at which each band after the first starts, ascending."""
        return (self.yellow, self.red)

    def band(self, probability: float) -> str:
        return self.NAMES[sum(probability >= t for t in self.thresholds)]


@dataclass(frozen=True)
class Spec:
    entity_key: str
    as_of_column: str
    label: str
    features: tuple[Feature, ...]
    model: dict[str, Any]
    bands: Bands
    test_fraction: float = 0.2
    split_seed: int = 42
    auc_tolerance: float = 0.005
    source: str = "<default>"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[Feature]:
        return [f for f in self.features if f.kind.categorical]

    @property
    def lr_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k in LR_PARAMS}

    @property
    def scale_features(self) -> bool:
        return bool(self.model.get("scaleFeatures", False))

    @property
    def hash(self) -> str:
        """sha256 of the spec's parsed content (every field but :attr:`source`, as canonical
        JSON: sorted keys, defaults filled in), so whitespace, comments, key order or where the
        file lies do not change it and any value that does change it. A score run records it;
        ``yws score --replay`` refuses a spec whose hash differs from the run's."""
        import hashlib
        import json
        from dataclasses import asdict

        content = asdict(self)
        del content["source"]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def with_params(self, overrides: dict[str, str]) -> Spec:
        """A copy with hyperparameters replaced from ``key=value`` strings (``--param``)."""
        model = dict(self.model)
        for key, raw in overrides.items():
            kinds = {**LR_PARAMS, **PIPELINE_PARAMS}
            if key not in kinds:
                raise SpecError(
                    f"--param {key}: unknown hyperparameter; known: {', '.join(sorted(kinds))}"
                )
            model[key] = _coerce(raw, kinds[key], f"--param {key}")
        _check_model(model, "--param")
        return replace(self, model=model)


def _coerce(raw: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise SpecError(f"{where}: expected true or false, got {raw!r}")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise SpecError(f"{where}: expected {_kind_name(kind)}, got {_shown(raw)}")
    if kind is int:  # the YAML number 2.0 and the --param text "2.0" alike
        number = raw
        if isinstance(raw, str):
            try:
                number = int(raw)
            except ValueError:
                try:
                    number = float(raw)
                except ValueError:
                    raise SpecError(f"{where}: expected a whole number, got {raw!r}") from None
        if isinstance(number, float):
            if not number.is_integer():  # int() would truncate 1.5 to 1 without a word
                raise SpecError(f"{where}: expected a whole number, got {raw!r}")
            number = int(number)
        raw = number
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{where}: expected {_kind_name(kind)}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: must be a finite number, got {raw!r}")
    return value


def _kind_name(kind: type) -> str:
    return {int: "a whole number", float: "a number"}.get(kind, kind.__name__)


def _shown(raw: Any) -> str:
    """A value for a one-line message: a nested YAML value can be long."""
    text = repr(raw)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _section(data: dict[str, Any], key: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """An optional mapping of the spec (``split``, ``validation``): absent is empty."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{key}: expected a mapping with {' and '.join(fields)}, "
                        f"got {_shown(value)}")
    unknown = sorted(map(str, set(value) - set(fields)))
    if unknown:
        raise SpecError(f"{key}: unknown field(s) {', '.join(unknown)}; known: "
                        f"{', '.join(fields)}")
    return value


def _check_model(model: dict[str, Any], where: str) -> None:
    def bounded(key: str, lo: float, hi: float) -> None:
        if key in model and not lo <= model[key] <= hi:
            raise SpecError(f"{where}: {key} must be between {lo} and {hi}, got {model[key]}")

    bounded("elasticNetParam", 0.0, 1.0)
    bounded("threshold", 0.0, 1.0)
    bounded("regParam", 0.0, math.inf)
    bounded("tol", 0.0, math.inf)
    if "maxIter" in model and not 1 <= model["maxIter"] <= MAX_ITER:
        raise SpecError(
            f"{where}: maxIter must be between 1 and {MAX_ITER:,}, got {model['maxIter']}"
        )


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] is None:
        raise SpecError(f"{where}: missing required field {key!r}" if where
                        else f"missing required field {key!r}")
    return d[key]


def _feature(raw: Any, i: int) -> Feature:
    where = f"features[{i}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with name, type and nulls")
    name = _ident(_need(raw, "name", where), f"{where}.name")
    where = f"feature {name!r}"
    kind = _need(raw, "type", where)
    if kind not in FEATURE_TYPES:
        raise SpecError(f"{where}: type {kind!r} is unknown; use one of {', '.join(FEATURE_TYPES)}")
    ftype = FEATURE_TYPES[kind]
    nulls = raw.get("nulls", ftype.null_policies[0])
    if nulls not in ftype.null_policies:
        raise SpecError(
            f"{where}: nulls {nulls!r} is not allowed for a {kind} feature; "
            f"use one of {', '.join(ftype.null_policies)}"
        )
    impute = None
    if nulls == "impute":
        impute = raw.get("impute", ftype.impute_default)
        if impute not in IMPUTE_STRATEGIES:
            raise SpecError(
                f"{where}: impute {impute!r} is unknown; use one of {', '.join(IMPUTE_STRATEGIES)}"
            )
    unseen = None
    if ftype.categorical:
        unseen = raw.get("unseen", UNSEEN_POLICIES[0])
        if unseen not in UNSEEN_POLICIES:
            raise SpecError(
                f"{where}: unseen {unseen!r} is unknown; use one of {', '.join(UNSEEN_POLICIES)}"
            )
    unknown = set(map(str, raw)) - {"name", "type", "nulls", "impute", "unseen", "description"}
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return Feature(name=name, type=kind, nulls=nulls, impute=impute, unseen=unseen)


def _ident(value: Any, where: str) -> str:
    try:
        return check_identifier(value, where)
    except SettingsError as e:
        raise SpecError(str(e)) from None


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    """Build a :class:`Spec` from the parsed YAML mapping, checking every field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping with entity_key, label, features, ...")
    try:
        entity_key = _ident(_need(data, "entity_key", ""), "entity_key")
        as_of = _ident(_need(data, "as_of_column", ""), "as_of_column")
        label = _ident(_need(data, "label", ""), "label")
        raw_features = _need(data, "features", "")
        if not isinstance(raw_features, list) or not raw_features:
            raise SpecError("features: expected a non-empty list")
        features = tuple(_feature(f, i) for i, f in enumerate(raw_features))
        names = [entity_key, as_of, label, *(f.name for f in features)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"column name(s) used twice: {', '.join(dupes)}")

        raw_model = data.get("model") or {}
        if not isinstance(raw_model, dict):
            raise SpecError("model: expected a mapping of LogisticRegression hyperparameters")
        kinds = {**LR_PARAMS, **PIPELINE_PARAMS}
        unknown = set(map(str, raw_model)) - set(kinds)
        if unknown:
            raise SpecError(
                f"model: unknown hyperparameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(kinds))}"
            )
        model = {k: _coerce(v, kinds[k], f"model.{k}") for k, v in raw_model.items()}
        _check_model(model, "model")

        raw_bands = _need(data, "bands", "")
        if not isinstance(raw_bands, dict):
            raise SpecError(f"bands: expected a mapping with yellow and red, got "
                            f"{_shown(raw_bands)}")
        yellow = _coerce(_need(raw_bands, "yellow", "bands"), float, "bands.yellow")
        red = _coerce(_need(raw_bands, "red", "bands"), float, "bands.red")
        if not 0.0 < yellow < red <= 1.0:
            raise SpecError(
                f"bands: need 0 < yellow < red <= 1 (got yellow={yellow}, red={red})"
            )

        split = _section(data, "split", ("test_fraction", "seed"))
        test_fraction = _coerce(split.get("test_fraction", 0.2), float, "split.test_fraction")
        if not 0.0 < test_fraction < 1.0:
            raise SpecError(f"split.test_fraction must be between 0 and 1, got {test_fraction}")
        seed = _coerce(split.get("seed", 42), int, "split.seed")
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise SpecError(f"split.seed must fit in 64 bits, got {seed}")
        validation = _section(data, "validation", ("auc_tolerance",))
        tolerance = _coerce(validation.get("auc_tolerance", 0.005), float,
                            "validation.auc_tolerance")
        if tolerance < 0:
            raise SpecError(f"validation.auc_tolerance must be >= 0, got {tolerance}")
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    return Spec(
        entity_key=entity_key,
        as_of_column=as_of,
        label=label,
        features=features,
        model=model,
        bands=Bands(yellow=yellow, red=red),
        test_fraction=test_fraction,
        split_seed=seed,
        auc_tolerance=tolerance,
        source=source,
    )


def default_spec_text() -> str:
    return resources.files("yws").joinpath("specs/default.yaml").read_text(encoding="utf-8")


def load_spec(path: str | Path | None = None) -> Spec:
    """Load a spec from ``path``, or the packaged default when ``path`` is None."""
    if path is None:
        return parse_spec(yaml.safe_load(default_spec_text()), source="default spec")
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise SpecError(f"{p}: nested too deeply to be a spec") from None
    try:
        return parse_spec(data, source=str(p))
    except RecursionError:  # a deep value printed in a message
        raise SpecError(f"{p}: nested too deeply to be a spec") from None
