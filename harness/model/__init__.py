"""A pure-Python reference model of folio mapcounts in Linux 6.1 on x86-64.

It follows one scenario's steps through VMAs, page tables and folios, working on extents
rather than pages, and predicts for every probe what /proc/kpagecount and pagemap show
(P, presence, folio identity) together with the counts the kernel series experiments
with (T, E, W, V). Layers, each importing only those before it: layout, folio, vma,
pagetable, mm, state (what the lower layers may ask of the kernel), thp, shmem, fault,
reclaim, mremap, kernel (system calls), counts, predict, table (text and JSON output).
"""

from harness.model.errors import ModelError
from harness.model.predict import (
    FolioPrediction,
    ModelResult,
    PageRun,
    ProbePrediction,
    VmaPrediction,
    predict,
)
from harness.model.table import format_table, to_json

__all__ = [
    "FolioPrediction",
    "ModelError",
    "ModelResult",
    "PageRun",
    "ProbePrediction",
    "VmaPrediction",
    "format_table",
    "predict",
    "to_json",
]
