"""Everything a run records, locally or on the standing server: the run
directory (``writer``), its JSON (``jsonable``), the host it ran on
(``host``), provenance-tagged summaries (``provenance``) and what the
terminal shows (``console``)."""
from edgebed.results.console import format_table, print_table, progress, progress_enabled
from edgebed.results.jsonable import to_jsonable
from edgebed.results.provenance import (
    Tagged,
    derived,
    estimated,
    given,
    measured,
    modeled,
    split_provenance,
    weakest,
)
from edgebed.results.writer import RunWriter, new_run_id

__all__ = ["RunWriter", "Tagged", "derived", "estimated", "format_table", "given", "measured",
           "modeled", "new_run_id", "print_table", "progress", "progress_enabled",
           "split_provenance", "to_jsonable", "weakest"]
