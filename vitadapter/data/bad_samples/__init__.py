"""Bad data files: the error that names them, reading that raises or skips them, and the report of what was skipped.

`reading.py` is what the datasets use (`BadSampleError`, the skipping policies, `CollateWithSkips`);
`bad_sample_report.py` holds `BadSampleReport`, the Lightning callback that warns about the skipped files
and puts them in metrics.json. The callback is imported from its module, not from here, so that the
datasets do not import Lightning callbacks.
"""

from vitadapter.data.bad_samples.reading import (
    POLICIES,
    SKIPPED,
    BadSampleError,
    CollateWithSkips,
    SkippedFile,
    bad_sample,
    check_policy,
    open_image,
    read_or_skip,
    read_rgb,
    skip_policy,
)

__all__ = [
    "POLICIES",
    "SKIPPED",
    "BadSampleError",
    "CollateWithSkips",
    "SkippedFile",
    "bad_sample",
    "check_policy",
    "open_image",
    "read_or_skip",
    "read_rgb",
    "skip_policy",
]
