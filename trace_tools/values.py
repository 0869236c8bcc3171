"""Plain data types that decoded traces are made of.

A trace never stores live objects. Values that are not arrays, Python scalars or
containers are reduced on recording to one of the records below, and decoding a
trace yields exactly these records, so loading runs no code of anyone's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ElementData:
    """A chemical element as the traced code uses it (gemmi.Element reduced)."""

    symbol: str
    it92_a: tuple[float, ...]
    it92_b: tuple[float, ...]
    it92_c: float
    weight: float


@dataclass(frozen=True)
class CellData:
    """A unit cell (gemmi.UnitCell reduced): a, b, c in Angstrom, angles in degrees."""

    parameters: tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class SpaceGroupData:
    """A space group (gemmi.SpaceGroup reduced)."""

    hm: str
    number: int


@dataclass(frozen=True)
class FileRef:
    """A file-path argument, stored by file name and content hash.

    Replay looks the name up in a data folder and checks the hash
    (see :func:`trace_tools.paths.resolve_file`).
    """

    name: str
    sha256: str


@dataclass(frozen=True)
class ArraySummary:
    """Stands in for an array that was too large to store whole."""

    shape: tuple[int, ...]
    dtype: str
    sha256: str
    sample: Any  # a small numpy array: the first elements of the flattened array


@dataclass(frozen=True)
class ObjectData:
    """An object of the traced package (or another unsupported object), by its attributes.

    ``cls`` is the qualified class name; ``attrs`` holds the attributes that
    could be encoded; ``omitted`` names the ones that could not.
    """

    cls: str
    attrs: dict[str, Any] = field(default_factory=dict)
    omitted: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExceptionData:
    """An exception raised by a recorded call."""

    type: str
    message: str


@dataclass
class Call:
    """One recorded call of one function or method."""

    function: str  # eryx.<module>.<function> or eryx.<module>.<Class>.<method>
    scenario: str  # e.g. "7n2h-s2"
    index: int  # position among this function's calls within the scenario
    args: dict[str, Any]  # bound by parameter name (self excluded), defaults applied
    passed: tuple[str, ...]  # names of the arguments the caller passed explicitly
    result: Any = None
    exception: ExceptionData | None = None
    attrs_read: dict[str, Any] = field(default_factory=dict)  # values before the call
    attrs_written: dict[str, Any] = field(default_factory=dict)  # values after the call

    @property
    def case_id(self) -> str:
        return f"{self.scenario}-call{self.index}"


@dataclass
class Trace:
    """All recorded calls of one function, with where they came from."""

    function: str
    provenance: dict[str, Any]
    calls: list[Call]
    truncated: bool = False  # True when some arrays are stored as ArraySummary
    path: str | None = None
