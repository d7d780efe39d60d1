"""Scenario: what a load simulation does, loaded from TOML, and the draws it implies.

A scenario file (``data/scenarios/*.toml``) has top-level keys and optional
tables ``[producer]``, ``[workers]`` and ``[run]``; the tables only group keys
for the reader, every key is a field of ``Scenario`` (names are unique across
tables). Command-line options override single fields (``Scenario.replace``).

The random draws (job fields, service times, failures) live here too, so a
scenario and a seed fully decide what the producers and workers do.
"""

from __future__ import annotations

import dataclasses
import math
import random
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botrix_toolkit.core import arguments
from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.models import Priority
from botrix_toolkit.core.settings import bundled_data_dir

SCENARIO_DIR = bundled_data_dir() / "scenarios"
GROUP_TABLES = ("producer", "workers", "run")
RATE_SHAPES = ("constant", "step", "sine")
SERVICE_DISTRIBUTIONS = ("fixed", "exponential", "lognormal")


@dataclass(frozen=True)
class Scenario:
    """Every knob of a simulation run (units in the names: _s seconds, rates per second)."""

    name: str = "adhoc"
    description: str = ""
    seed: int | None = None
    # -- run ------------------------------------------------------------
    duration_s: float | None = 10.0  # producers stop after this (None: only `jobs` bounds)
    jobs: int | None = None  # producers stop after this many jobs (None: only duration)
    drain_s: float = 30.0  # after producing, wait this long at most for the queue to empty
    stats_interval_s: float = 0.5
    stall_timeout_s: float = 3.0  # recover_stalled timeout of the coordinator's recovery loop
    recovery_interval_s: float = 0.5
    # -- producer -------------------------------------------------------
    rate: float = 200.0  # jobs per second (the base rate)
    rate_shape: str = "constant"  # constant | step | sine
    burst_rate: float = 0.0  # step: the rate during a burst; sine: the peak
    burst_period_s: float = 5.0
    burst_duty: float = 0.2  # step: share of each period spent at burst_rate
    priority_mix: Mapping[str, float] = field(
        default_factory=lambda: {"high": 0.1, "normal": 0.6, "low": 0.3})
    count_min: int = 1
    count_max: int = 100
    test_mode_share: float = 0.2
    users: int = 500  # distinct usernames drawn from
    # -- workers --------------------------------------------------------
    workers: int = 2  # processes
    concurrency: int = 4  # handler threads per process
    batch: int = 4  # jobs claimed per round trip
    service: str = "exponential"  # fixed | exponential | lognormal
    service_mean_s: float = 0.005
    service_sigma: float = 0.5  # lognormal: sigma of the underlying normal
    scale_by_count: bool = False  # service time * count / mean count
    failure_rate: float = 0.0  # probability that one attempt fails
    max_retries: int = 2  # requeues before a job fails for good (Go lowers priority)
    crashes: int = 0  # worker processes killed (SIGKILL) mid-job
    crash_after_s: float = 1.0  # the first crash; further ones spaced by this too
    restart_crashed: bool = True  # start a replacement process after a crash

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Scenario:
        """A scenario from a (TOML-shaped) mapping; unknown keys are an error."""
        flat: dict[str, Any] = {}
        for key, value in document.items():
            if key in GROUP_TABLES and isinstance(value, Mapping):
                for inner, inner_value in value.items():
                    if inner in flat:
                        raise InvalidInputError(f"scenario key {inner!r} is given twice")
                    flat[inner] = inner_value
            elif key in flat:
                raise InvalidInputError(f"scenario key {key!r} is given twice")
            else:
                flat[key] = value
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise InvalidInputError(f"unknown scenario keys {unknown}; known keys: {sorted(known)}")
        return cls(**flat)

    @classmethod
    def load(cls, path_or_name: str | Path) -> Scenario:
        """A scenario from a TOML file, or by name from ``data/scenarios`` (``"burst"``)."""
        path = Path(path_or_name)
        if not path.suffix and not path.exists():
            path = SCENARIO_DIR / f"{path_or_name}.toml"
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            available = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
            raise InvalidInputError(f"no scenario file {str(path)!r}; "
                                    f"scenarios in {SCENARIO_DIR}: {available}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(
                f"scenario file {str(path)!r} is not valid TOML: {exc}") from None
        document.setdefault("name", path.stem)
        return cls.from_dict(document)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with the given fields changed (None values are ignored).

        The description, written for the file's own settings, gains a note of
        what was changed, so a saved run never describes settings it did not use.
        """
        changed = {k: v for k, v in changes.items()
                   if v is not None and k != "description" and v != getattr(self, k)}
        if changed and "description" not in changes and self.description:
            note = ", ".join(f"{k}={v}" for k, v in changed.items())
            changed["description"] = f"{self.description} (changed: {note})"
        elif changes.get("description") is not None:
            changed["description"] = changes["description"]
        return dataclasses.replace(self, **changed)

    def with_overrides(self, **changes: Any) -> Scenario:
        """``replace`` with the options of a run (``botrix simulate``, ``run_simulation``).

        ``jobs`` given without ``duration_s`` runs until that many jobs are
        added, however long it takes (the file's duration no longer applies).
        """
        scenario = self
        if changes.get("jobs") is not None and changes.get("duration_s") is None:
            scenario = scenario.replace(jobs=changes["jobs"]).unbounded_in_time()
        return scenario.replace(**changes)

    def unbounded_in_time(self) -> Scenario:
        """A copy that produces until ``jobs`` are added, however long it takes."""
        return dataclasses.replace(self, duration_s=None)

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["priority_mix"] = dict(self.priority_mix)
        return document

    # -- what it implies ---------------------------------------------------
    def rate_at(self, t: float) -> float:
        """The producers' target rate (jobs/s) ``t`` seconds into the run."""
        if self.rate_shape == "step":
            in_period = (t % self.burst_period_s) / self.burst_period_s
            return self.burst_rate if in_period >= 1 - self.burst_duty else self.rate
        if self.rate_shape == "sine":
            phase = (1 - math.cos(2 * math.pi * t / self.burst_period_s)) / 2
            return self.rate + (self.burst_rate - self.rate) * phase
        return self.rate

    @property
    def mean_count(self) -> float:
        return (self.count_min + self.count_max) / 2


def _check(s: Scenario) -> None:
    def positive(name: str, value: Any, allow_zero: bool = False) -> None:
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (
            value < 0 if allow_zero else value <= 0)
        if bad:
            raise InvalidInputError(f"scenario {s.name!r}: {name} must be a number "
                                    f"{'>= 0' if allow_zero else '> 0'}; got {value!r}")

    if s.duration_s is None and s.jobs is None:
        raise InvalidInputError(f"scenario {s.name!r}: give duration_s, jobs or both")
    if s.duration_s is not None:
        positive("duration_s", s.duration_s)
    if s.jobs is not None:
        positive("jobs", s.jobs)
    for name in ("rate", "burst_period_s", "service_mean_s", "stats_interval_s",
                 "stall_timeout_s", "recovery_interval_s"):
        positive(name, getattr(s, name))
    for name in ("burst_rate", "service_sigma", "drain_s", "crash_after_s"):
        positive(name, getattr(s, name), allow_zero=True)
    for name, minimum in (("workers", 1), ("concurrency", 1), ("batch", 1), ("count_min", 1), ("users", 1),
                          ("max_retries", 0), ("crashes", 0)):
        arguments.whole_number(f"scenario {s.name!r}: {name}", getattr(s, name), minimum)
    if s.count_max < s.count_min:
        raise InvalidInputError(
            f"scenario {s.name!r}: count_max {s.count_max} < count_min {s.count_min}")
    for name in ("failure_rate", "test_mode_share", "burst_duty"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidInputError(
                f"scenario {s.name!r}: {name} must be between 0 and 1; got {value!r}")
    if s.rate_shape not in RATE_SHAPES:
        raise InvalidInputError(f"scenario {s.name!r}: rate_shape must be one of {RATE_SHAPES}; "
                                f"got {s.rate_shape!r}")
    if s.service not in SERVICE_DISTRIBUTIONS:
        raise InvalidInputError(f"scenario {s.name!r}: service must be one of "
                                f"{SERVICE_DISTRIBUTIONS}; got {s.service!r}")
    weights = priority_weights(s.priority_mix)
    if sum(weights) <= 0:
        raise InvalidInputError(f"scenario {s.name!r}: priority_mix needs a positive weight")


def priority_weights(mix: Mapping[str, float]) -> list[float]:
    """Weights of high, normal, low from a mix such as ``{"high": 0.1, "low": 0.3}``."""
    weights = {"high": 0.0, "normal": 0.0, "low": 0.0}
    for label, weight in mix.items():
        level = Priority.parse(label).name.lower()
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise InvalidInputError(
                f"priority_mix[{label!r}] must be a number >= 0; got {weight!r}")
        weights[level] = float(weight)
    return [weights["high"], weights["normal"], weights["low"]]


def parse_priority_mix(text: str) -> dict[str, float]:
    """``"high=10,normal=60,low=30"`` as a mix (weights need not sum to 1)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        label, sep, weight = part.partition("=")
        try:
            mix[label.strip()] = float(weight)
        except ValueError:
            sep = ""
        if not sep:
            raise InvalidInputError(
                f"priority mix must look like high=10,normal=60,low=30; got {text!r}")
    priority_weights(mix)
    return mix


class JobFactory:
    """Draws botrix-like jobs for one producer: ids ``<run tag>-<n>``, count, user, priority."""

    PRIORITIES = (2, 1, 0)

    def __init__(self, scenario: Scenario, run_tag: str, rng: random.Random) -> None:
        self.scenario = scenario
        self.run_tag = run_tag
        self.rng = rng
        self.weights = priority_weights(scenario.priority_mix)
        self.made = 0

    def make(self, n: int) -> list[dict[str, Any]]:
        s, rng = self.scenario, self.rng
        priorities = rng.choices(self.PRIORITIES, weights=self.weights, k=n)
        jobs = []
        for priority in priorities:
            jobs.append({
                "id": job_id(self.run_tag, self.made),
                "count": rng.randint(s.count_min, s.count_max),
                "username": f"user{rng.randrange(s.users):04d}",
                # A real-looking secret, so the run also checks that none leaks.
                "password": "".join(rng.choices(string.ascii_letters + string.digits, k=12)),
                "test_mode": rng.random() < s.test_mode_share,
                "priority": priority,
            })
            self.made += 1
        return jobs


def job_id(run_tag: str, n: int) -> str:
    """The id of the ``n``-th job of a run: known to every process without asking Redis."""
    return f"{run_tag}-{n:09d}"


def service_time(scenario: Scenario, count: int, rng: random.Random) -> float:
    """Seconds one attempt takes, drawn from the scenario's distribution."""
    mean = scenario.service_mean_s
    if scenario.service == "fixed":
        value = mean
    elif scenario.service == "exponential":
        value = rng.expovariate(1 / mean)
    else:
        sigma = scenario.service_sigma
        # mu such that the log-normal's mean is `mean`
        value = rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
    if scenario.scale_by_count:
        value *= count / scenario.mean_count
    return value
