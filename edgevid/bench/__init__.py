"""``edgevid bench``: every format of a model (target x precision x batch) measured side by side on this machine."""

from edgevid.bench.engine import BenchOptions, bench, parse_list
from edgevid.bench.formats import TARGETS, Format, FormatUnavailable
from edgevid.bench.report import STATUSES, TABLE_COLUMNS, BenchResult, BenchRow

__all__ = [
    "STATUSES",
    "TABLE_COLUMNS",
    "TARGETS",
    "BenchOptions",
    "BenchResult",
    "BenchRow",
    "Format",
    "FormatUnavailable",
    "bench",
    "parse_list",
]
